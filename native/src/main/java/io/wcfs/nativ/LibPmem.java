package io.wcfs.nativ;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.IgnoreError;
import jnr.ffi.annotations.Out;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.byref.IntByReference;
import jnr.ffi.byref.LongLongByReference;
import jnr.ffi.types.size_t;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * PMDK's libpmem ({@code libpmem.so.1}, Debian {@code libpmem1}), loaded once. libpmem knows the
 * CPU's flush instructions (clwb, clflushopt, movnt, dc cvap) and tells a real pmem mapping from
 * a page-cache one; wcfs never issues flush instructions of its own.
 *
 * <p>Every call that can fail is checked here and becomes a {@link PmemException} carrying
 * {@code pmem_errormsg()}.
 */
public final class LibPmem {
  private static final Logger LOG = LoggerFactory.getLogger(LibPmem.class);

  public static final int PMEM_FILE_CREATE = 1;
  public static final int PMEM_FILE_EXCL = 1 << 1;

  public static final int PMEM_F_MEM_NODRAIN = 1;
  public static final int PMEM_F_MEM_NONTEMPORAL = 1 << 1;
  public static final int PMEM_F_MEM_TEMPORAL = 1 << 2;
  public static final int PMEM_F_MEM_NOFLUSH = 1 << 5;

  /** libpmem's API version this binding was written against (PMEM_MAJOR/MINOR_VERSION). */
  private static final int MAJOR = 1;
  private static final int MINOR = 1;

  /** Public only for jnr-ffi's generated implementation; use the checked wrappers. */
  public interface Api {
    @SaveError
    long pmem_map_file(
        String path,
        @size_t long len,
        int flags,
        int mode,
        @Out LongLongByReference mappedLen,
        @Out IntByReference isPmem);

    @SaveError
    int pmem_unmap(long addr, @size_t long len);

    @IgnoreError
    int pmem_is_pmem(long addr, @size_t long len);

    @IgnoreError
    long pmem_memcpy(long dest, long src, @size_t long len, int flags);

    @IgnoreError
    void pmem_flush(long addr, @size_t long len);

    @IgnoreError
    void pmem_drain();

    // pmem_msync is not bound: it is msync(MS_SYNC), one device flush per range; a page-cache
    // mapping commits through PageCacheSync instead (one fdatasync per commit).

    @IgnoreError
    String pmem_errormsg();

    @IgnoreError
    String pmem_check_version(int major, int minor);
  }

  private static final Api API;
  private static final String UNAVAILABLE;

  static {
    Api api = null;
    String why = null;
    try {
      api = LibraryLoader.create(Api.class).failImmediately().load("libpmem.so.1");
      String versionError = api.pmem_check_version(MAJOR, MINOR);
      if (versionError != null) {
        why = "libpmem version check failed: " + versionError;
        api = null;
      }
    } catch (LinkageError | RuntimeException e) {
      why = "libpmem.so.1 could not be loaded (" + e.getMessage() + "); install Debian's libpmem1";
    }
    API = api;
    UNAVAILABLE = why;
    if (API == null) {
      LOG.debug("libpmem unavailable: {}", why);
    }
  }

  private LibPmem() {}

  /** True when libpmem.so.1 loaded and accepted our API version. */
  public static boolean isAvailable() {
    return API != null;
  }

  /** Why libpmem is not available, or null when it is. */
  public static String unavailableReason() {
    return UNAVAILABLE;
  }

  /** A mapping made by {@code pmem_map_file}. */
  public record Mapping(long address, long length, boolean isPmem) {}

  /** Maps an existing file whole ({@code len = 0, flags = 0}). */
  public static Mapping mapFile(String path) throws PmemException {
    LongLongByReference mapped = new LongLongByReference();
    IntByReference isPmem = new IntByReference();
    long addr = api().pmem_map_file(path, 0, 0, 0, mapped, isPmem);
    if (addr == 0) {
      throw error("pmem_map_file " + path);
    }
    return new Mapping(addr, mapped.getValue(), isPmem.getValue() != 0);
  }

  public static void unmap(long address, long length) throws PmemException {
    if (api().pmem_unmap(address, length) != 0) {
      throw error("pmem_unmap");
    }
  }

  public static boolean isPmem(long address, long length) {
    return api().pmem_is_pmem(address, length) != 0;
  }

  public static void memcpy(long dest, long src, long length, int flags) {
    API.pmem_memcpy(dest, src, length, flags);
  }

  public static void flush(long address, long length) {
    API.pmem_flush(address, length);
  }

  public static void drain() {
    API.pmem_drain();
  }

  private static Api api() {
    if (API == null) {
      throw new IllegalStateException(UNAVAILABLE);
    }
    return API;
  }

  private static PmemException error(String call) {
    return new PmemException(call, API.pmem_errormsg(), Runtime.getRuntime(API).getLastError());
  }
}
