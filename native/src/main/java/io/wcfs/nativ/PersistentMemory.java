package io.wcfs.nativ;

import com.kenai.jffi.MemoryIO;
import java.io.IOException;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A mapped cache file and the three-step persistence API over it: {@link #memcpy} (pmem_memcpy),
 * {@link #assign} (pmem_assign, the 8-byte store that is atomic once persisted), {@link #flush}
 * (pmem_flush of a range) and {@link #commit} (pmem_commit). To make data durable all three are
 * called, in that order. Offsets are relative to the start of the mapping.
 *
 * <p>The mapping comes from libpmem when it loads, else from a plain {@code mmap} (the fallback).
 * A mapping that is not persistent memory (strategy MSYNC, with either) is made durable through
 * the page cache: stores are written into it with pwrite (not through the mapping, see {@link
 * #memcpy}), flush notes pages, commit writes them back and flushes the device once (see {@link
 * PageCacheSync}); the mapping serves reads. Data-path methods take native addresses so FUSE buffers are copied
 * straight into and out of the mapping.
 *
 * <p>Thread safety: stores to disjoint ranges may run concurrently; callers order the rest.
 */
public final class PersistentMemory implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(PersistentMemory.class);
  private static final MemoryIO IO = MemoryIO.getInstance();

  /** Where the mapping came from. */
  public enum Backend {
    LIBPMEM,
    FALLBACK
  }

  private final Path path;
  private final long base;
  private final long size;
  private final Backend backend;
  private final boolean isPmem;
  private final FlushStrategy strategy;
  private final boolean simulated;
  private final int copyFlags;
  /** Flush and commit of a page-cache mapping (strategy MSYNC); null for the pmem strategies. */
  private final PageCacheSync pages;
  private boolean closed;

  /** The kernel calls behind flush and commit of a page-cache mapping; tests count them. */
  interface Kernel {
    /** sysconf(_SC_PAGESIZE). */
    long pageSize();

    /** sync_file_range(2): 0 or -errno. */
    int syncFileRange(int fd, long offset, long length, int flags);

    /** fdatasync(2): 0 or -errno. */
    int fdatasync(int fd);

    /** pwrite(2) of all {@code count} bytes at native {@code address}. */
    void pwrite(int fd, long address, long count, long offset) throws NativeIOException;
  }

  private PersistentMemory(
      Path path, long base, long size, Backend backend, boolean isPmem, FlushStrategy strategy,
      boolean simulated, PageCacheSync pages) {
    this.path = path;
    this.pages = pages;
    this.base = base;
    this.size = size;
    this.backend = backend;
    this.isPmem = isPmem;
    this.strategy = strategy;
    this.simulated = simulated;
    // EAGER: non-temporal copy, nothing left to flush, the drain happens at commit.
    // LATE: cached copy without flushing; commit flushes the ranges it was told about.
    this.copyFlags =
        strategy == FlushStrategy.EAGER
            ? LibPmem.PMEM_F_MEM_NONTEMPORAL | LibPmem.PMEM_F_MEM_NODRAIN
            : LibPmem.PMEM_F_MEM_TEMPORAL | LibPmem.PMEM_F_MEM_NOFLUSH | LibPmem.PMEM_F_MEM_NODRAIN;
  }

  /**
   * Maps an existing cache file.
   *
   * @param requested the flush strategy; AUTO picks what the seed thread measured
   * @param forceFallback ignore libpmem even when it is installed (tests, comparisons)
   */
  public static PersistentMemory map(Path file, FlushStrategy requested, boolean forceFallback)
      throws IOException {
    return map(file, requested, forceFallback, null);
  }

  /** {@link #map(Path, FlushStrategy, boolean)} with the kernel calls going to {@code kernel}. */
  static PersistentMemory map(Path file, FlushStrategy requested, boolean forceFallback,
      Kernel kernel) throws IOException {
    if (kernel == null) {
      kernel = PageCacheSync.LIBC;
    }
    boolean simulated = isSimulated(file);
    String arch = System.getProperty("os.arch");
    if (!forceFallback && LibPmem.isAvailable()) {
      LibPmem.Mapping m = LibPmem.mapFile(file.toString());
      PageCacheSync pages = null;
      try {
        FlushStrategy strategy = resolve(requested, m.isPmem(), arch, file);
        if (strategy == FlushStrategy.MSYNC) {
          // Not pmem_msync: it is msync(MS_SYNC), a device flush per range (see PageCacheSync).
          // libpmem mapped the file from offset 0, so mapping offsets are file offsets.
          pages = new PageCacheSync(LibC.open(file.toString(), LibC.O_RDWR, 0), kernel);
          dropCachedPages(file, pages.fd());
          noReadAround(file, m.address(), m.length());
        }
        PersistentMemory pm =
            new PersistentMemory(
                file, m.address(), m.length(), Backend.LIBPMEM, m.isPmem(), strategy, simulated,
                pages);
        pm.logChoice();
        return pm;
      } catch (IOException | RuntimeException e) {
        if (pages != null) {
          pages.close();
        }
        LibPmem.unmap(m.address(), m.length());
        throw e;
      }
    }
    if (!forceFallback) {
      LOG.warn("{}; using the msync fallback", LibPmem.unavailableReason());
    }
    FlushStrategy strategy = resolve(requested, false, arch, file);
    long length = Files.size(file);
    int fd = LibC.open(file.toString(), LibC.O_RDWR, 0);
    long addr = 0;
    try {
      if (strategy == FlushStrategy.MSYNC) {
        dropCachedPages(file, fd);
      }
      addr = LibC.mmapShared(fd, length);
      if (strategy == FlushStrategy.MSYNC) {
        noReadAround(file, addr, length);
      }
      // The descriptor stays open for the commits' sync_file_range and fdatasync.
      PersistentMemory pm =
          new PersistentMemory(file, addr, length, Backend.FALLBACK, false, strategy, simulated,
              new PageCacheSync(fd, kernel));
      pm.logChoice();
      return pm;
    } catch (IOException | RuntimeException e) {
      if (addr != 0) {
        LibC.munmap(addr, length);
      }
      LibC.close(fd);
      throw e;
    }
  }

  /**
   * A page-cache mapping's file is kept in single pages: {@link #dropCachedPages} at map, then
   * {@link #noReadAround} on the mapping.
   *
   * <p>Why: ext4 caches a file in large folios (up to 2 MiB) after read-around or a large
   * write, and a pwrite of a few bytes into one walks all its buffer heads: 45-49 us per 16-byte
   * or 4 KiB pwrite instead of 2.4-3.6 us on this VM's 6.18 kernel, and the mount's scan had
   * read the entry and file tables through the mapping. A commit stores three or four such
   * pwrites per fsync; with 4 fio jobs {@code ext4_block_write_begin} was 23-29% of the
   * daemon's samples. Faults without read-around, and pwrites of a block or less, bring single
   * pages. Only a cost to performance if it fails, so a failure is logged, not thrown.
   */
  private static void dropCachedPages(Path file, int fd) {
    int rc = LibC.fdatasync(fd); // first: nothing is dropped unwritten
    if (rc == 0) {
      rc = LibC.fadviseWholeFile(fd, LibC.POSIX_FADV_DONTNEED);
    }
    if (rc != 0) {
      LOG.warn("{}: dropping its cached pages failed ({}); writes into it may be slower",
          file, LibC.strerror(-rc));
    }
  }

  /** Faults of the mapping read one page, not a read-around window; see dropCachedPages. */
  private static void noReadAround(Path file, long address, long length) {
    int rc = LibC.madvise(address, length, LibC.MADV_RANDOM);
    if (rc != 0) {
      LOG.warn("{}: madvise(MADV_RANDOM) failed ({}); writes into it may be slower",
          file, LibC.strerror(-rc));
    }
  }

  private static FlushStrategy resolve(
      FlushStrategy requested, boolean isPmem, String arch, Path file) throws IOException {
    if (requested == FlushStrategy.AUTO || requested == null) {
      return FlushStrategy.autoFor(isPmem, arch);
    }
    if (requested != FlushStrategy.MSYNC && !isPmem) {
      throw new IOException(
          "flush strategy '"
              + requested
              + "' needs a persistent-memory mapping, but "
              + file
              + " is not one (no libpmem, or not on DAX): use --flush-strategy msync or auto"
              + " (for tests on tmpfs, PMEM_IS_PMEM_FORCE=1 makes libpmem treat it as pmem)");
    }
    return requested;
  }

  /** tmpfs and PMEM_IS_PMEM_FORCE lose everything at power-off: durability is only simulated. */
  private static boolean isSimulated(Path file) {
    if ("1".equals(System.getenv("PMEM_IS_PMEM_FORCE"))) {
      return true;
    }
    try {
      FileStore store = Files.getFileStore(file);
      return store.type().equals("tmpfs") || store.type().equals("ramfs");
    } catch (IOException e) {
      return false;
    }
  }

  private void logChoice() {
    LOG.info("cache memory {}: {}", path, describe());
    if (simulated) {
      LOG.warn(
          "durability is only simulated: {} is on tmpfs or PMEM_IS_PMEM_FORCE=1 is set;"
              + " committed data does not survive a power failure",
          path);
    }
  }

  /** One line for logs and {@code wcfs status}. */
  public String describe() {
    return String.format(
        "%s, strategy %s%s, %s, durability %s",
        backend == Backend.LIBPMEM ? "libpmem" : "fallback mmap",
        strategy,
        pages == null ? ""
            : " (commit: sync_file_range + fdatasync, " + pages.pageSize() + "-byte pages)",
        isPmem ? "pmem mapping" : "page-cache mapping",
        simulated ? "simulated" : "real");
  }

  public Path path() {
    return path;
  }

  public long size() {
    return size;
  }

  public Backend backend() {
    return backend;
  }

  public boolean isPmem() {
    return isPmem;
  }

  public FlushStrategy strategy() {
    return strategy;
  }

  /**
   * pmem_memcpy: copies {@code length} bytes from native memory at {@code src} into the cache.
   *
   * <p>A page-cache mapping (MSYNC) is written with pwrite on the cache file, not by stores
   * through the mapping: the same page-cache pages, so reads through the mapping see the
   * bytes at once, but an fdatasync after stores through a mapping measured about ten times
   * dearer on this VM than after pwrite (a commit's p50 1.7-2.0 ms against 0.17-0.18 ms,
   * 4 KiB write+fsync through a mount with the cache file on the disk; the mapped pages are
   * write-protected again for every writeback and fault again on the next store).
   */
  public void memcpy(long offset, long src, long length) throws NativeIOException {
    check(offset, length);
    if (pages != null) {
      pages.store(offset, src, length);
      return;
    }
    if (backend == Backend.LIBPMEM) {
      LibPmem.memcpy(base + offset, src, length, copyFlags);
    } else {
      IO.copyMemory(src, base + offset, length);
    }
  }

  /**
   * pmem_assign: one aligned 8-byte store, atomic with respect to persistence (on a page-cache
   * mapping an 8-byte pwrite, like {@link #memcpy}: the device writes it within one sector).
   */
  public void assign(long offset, long value) throws NativeIOException {
    check(offset, 8);
    if ((offset & 7) != 0) {
      throw new IllegalArgumentException("pmem_assign at unaligned offset " + offset);
    }
    if (pages != null) {
      pages.storeLong(offset, value);
      return;
    }
    IO.putLong(base + offset, value);
    if (strategy == FlushStrategy.EAGER) {
      // Eager mode promises that nothing is left in the CPU cache after a store; a one-line
      // flush is the 8-byte equivalent of a non-temporal store.
      LibPmem.flush(base + offset, 8);
    }
  }

  /**
   * Two pmem_assigns to adjacent words, {@code first} at {@code offset} before {@code second}
   * after it. A page-cache mapping stores both with one pwrite (one system call: no process
   * kill between them); persistent memory with two ordered assigns.
   */
  public void assign2(long offset, long first, long second) throws NativeIOException {
    if (pages != null && (offset & 15) == 0) {
      check(offset, 16);
      pages.storeLongs(offset, first, second);
      return;
    }
    assign(offset, first);
    assign(offset + 8, second);
  }

  /**
   * pmem_flush: starts writing the range back (EAGER: nothing to do, the copy bypassed caches;
   * MSYNC: the pages are noted, and written back by the next commit).
   */
  public void flush(long offset, long length) {
    check(offset, length);
    switch (strategy) {
      case EAGER:
        break;
      case LATE:
        LibPmem.flush(base + offset, length);
        break;
      default:
        pages.note(offset, length);
    }
  }

  /**
   * Starts writeback of the pages flushed so far (MSYNC) without waiting; the next commit
   * waits for them. Nothing to do for the pmem strategies, whose flush already did it.
   */
  public void startCommit() throws NativeIOException {
    if (pages != null) {
      pages.start();
    }
  }

  /** pmem_commit: waits until everything flushed so far is durable. */
  public void commit() throws NativeIOException {
    if (pages != null) {
      pages.commit();
    } else {
      LibPmem.drain();
    }
  }

  /**
   * Device flushes this mapping has issued (each fdatasync of a page-cache mapping's commit:
   * a wait for writeback plus a flush of the device's write cache). Zero for the pmem
   * strategies, whose commit is a CPU fence (pmem_drain) and reaches no device queue.
   */
  public long deviceFlushes() {
    return pages == null ? 0 : pages.deviceFlushes();
  }

  /** Whether a commit is a device flush (a page-cache mapping), not a CPU fence. */
  public boolean commitFlushesDevice() {
    return pages != null;
  }

  public long readLong(long offset) {
    check(offset, 8);
    return IO.getLong(base + offset);
  }

  /** Where the mapping starts: writeback hands the kernel addresses in it (pwritev). */
  public long address() {
    return base;
  }

  /** Copies from the cache into native memory at {@code dst} (a FUSE reply buffer). */
  public void read(long offset, long dst, long length) {
    check(offset, length);
    IO.copyMemory(base + offset, dst, length);
  }

  public void read(long offset, byte[] dst, int dstOffset, int length) {
    check(offset, length);
    IO.getByteArray(base + offset, dst, dstOffset, length);
  }

  private void check(long offset, long length) {
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new IndexOutOfBoundsException(
          "cache range [" + offset + ", " + (offset + length) + ") outside mapping of " + size);
    }
  }

  @Override
  public synchronized void close() throws IOException {
    if (closed) {
      return;
    }
    closed = true;
    try {
      if (backend == Backend.LIBPMEM) {
        LibPmem.unmap(base, size);
      } else {
        LibC.munmap(base, size);
      }
    } finally {
      if (pages != null) {
        pages.close();
      }
    }
  }
}
