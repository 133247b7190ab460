package io.wcfs.nativ;

import java.util.Arrays;
import java.util.concurrent.locks.ReentrantLock;

/**
 * pmem_memcpy, pmem_flush and pmem_commit of a mapping that is not persistent memory (a cache
 * file in the page cache: on an SSD, on tmpfs, or any file libpmem maps without DAX). Stores
 * are pwrites into the file's pages ({@link #store}; why: {@link PersistentMemory#memcpy}). {@link #note} only records
 * the flushed range, rounded out to whole pages; {@link #commit} merges the ranges noted since
 * the last commit, starts writeback of each merged range with one {@code
 * sync_file_range(SYNC_FILE_RANGE_WRITE)}, then waits for them and flushes the device's write
 * cache with one {@code fdatasync} of the cache file. {@link #start} starts the ranges noted
 * so far early (while an earlier commit waits for its fdatasync); the next commit waits for
 * them.
 *
 * <p>Why not {@code msync(MS_SYNC)} per flushed range: on Linux every such msync is an fdatasync
 * of its range, device flush included, so a commit of n blocks cost about 2n device flushes
 * (data and entry of each block). Here a commit costs one device flush whatever it covers.
 * fdatasync writes back pages dirtied through the mapping (the kernel tracks them through
 * write faults), and it also writes pages stored after the flush that are not committed yet:
 * harmless, as their records' seq says they are not.
 *
 * <p>Why whole pages of the real page size: the kernel writes back pages, and two records in
 * one page are one range to merge; msync also refused ranges that did not start on a page
 * boundary, which with 64 KiB pages (arm64) made the old 4096-byte rounding fail with EINVAL.
 *
 * <p>Thread safety: {@link #note} may run in any thread at any time. Commits are serialized: a
 * commit returns only once every range noted before it began is durable, also when a concurrent
 * commit took that range (it waits for that commit to end). A failed commit fails every later
 * one: after a write-back error the kernel may have dropped the dirty pages, so no later commit
 * can vouch for them.
 */
final class PageCacheSync implements AutoCloseable {
  static final int SYNC_FILE_RANGE_WRITE = 2;

  /** The kernel calls of the real thing; {@link PersistentMemory.Kernel} lets tests count them. */
  static final PersistentMemory.Kernel LIBC = new PersistentMemory.Kernel() {
    @Override
    public long pageSize() {
      return LibC.pageSize();
    }

    @Override
    public int syncFileRange(int fd, long offset, long length, int flags) {
      return LibC.syncFileRange(fd, offset, length, flags);
    }

    @Override
    public int fdatasync(int fd) {
      return LibC.fdatasync(fd);
    }

    @Override
    public void pwrite(int fd, long address, long count, long offset) throws NativeIOException {
      LibC.pwrite(fd, address, count, offset);
    }
  };
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();

  private final int fd;
  private final PersistentMemory.Kernel kernel;
  private final long pageMask;
  /** Serializes commits from taking the noted ranges to the end of their fdatasync. */
  private final ReentrantLock commitLock = new ReentrantLock();
  /** Needs commitLock. The first failure, thrown again by every later commit. */
  private NativeIOException failed;
  /** Guards the noted ranges: starts[i], ends[i] for i below count, page-aligned. */
  private final Object noted = new Object();
  private long[] starts = new long[64];
  private long[] ends = new long[64];
  private int count;
  /** Guarded by noted. {@link #start} took ranges since the last commit began. */
  private boolean started;
  /** The first failure of {@link #start}: the commits after it fail with it. */
  private volatile NativeIOException startFailed;
  /** fdatasync calls made (each one a device cache flush), failed ones included. */
  private final java.util.concurrent.atomic.AtomicLong deviceFlushes =
      new java.util.concurrent.atomic.AtomicLong();

  /** Takes ownership of {@code fd}, a descriptor of the mapped file; {@link #close} closes it. */
  PageCacheSync(int fd, PersistentMemory.Kernel kernel) {
    long page = kernel.pageSize();
    if (page < 512 || Long.bitCount(page) != 1) {
      throw new IllegalStateException("sysconf(_SC_PAGESIZE) returned " + page
          + ", not a power of two of at least 512");
    }
    this.fd = fd;
    this.kernel = kernel;
    this.pageMask = page - 1;
  }

  long pageSize() {
    return pageMask + 1;
  }

  /** The cache file's descriptor the stores and commits use. */
  int fd() {
    return fd;
  }

  /** A store into the cache file's pages: pwrite of {@code length} bytes at {@code src}. */
  void store(long offset, long src, long length) throws NativeIOException {
    kernel.pwrite(fd, src, length, offset);
  }

  /** An 8-byte store, staged in a per-thread native word. */
  void storeLong(long offset, long value) throws NativeIOException {
    long word = WORD.get();
    IO.putLong(word, value);
    kernel.pwrite(fd, word, 8, offset);
  }

  /**
   * Two adjacent 8-byte stores in one pwrite: one system call copies both into the page, so
   * no process kill falls between them, and 16 aligned bytes lie in one disk sector.
   */
  void storeLongs(long offset, long first, long second) throws NativeIOException {
    long words = WORD.get();
    IO.putLong(words, first);
    IO.putLong(words + 8, second);
    kernel.pwrite(fd, words, 16, offset);
  }

  /** Per thread: the 16 bytes an assign is written from (never freed: threads are few). */
  private static final ThreadLocal<Long> WORD = ThreadLocal.withInitial(
      () -> IO.allocateMemory(16, true));

  /**
   * Device flushes issued so far: one per fdatasync. sync_file_range(SYNC_FILE_RANGE_WRITE)
   * only starts writeback and waits for nothing, so it is not one.
   */
  long deviceFlushes() {
    return deviceFlushes.get();
  }

  /** pmem_flush: remembers the pages of [offset, offset + length) for the next commit. */
  void note(long offset, long length) {
    if (length <= 0) {
      return;
    }
    long start = offset & ~pageMask;
    long end = (offset + length + pageMask) & ~pageMask;
    synchronized (noted) {
      // A commit flushes block after block, most often in order: grow the last range in place.
      if (count > 0 && start <= ends[count - 1] && end >= starts[count - 1]) {
        starts[count - 1] = Math.min(start, starts[count - 1]);
        ends[count - 1] = Math.max(end, ends[count - 1]);
        return;
      }
      if (count == starts.length) {
        count = merge(starts, ends, count);
        if (count > starts.length / 2) {
          starts = Arrays.copyOf(starts, starts.length * 2);
          ends = Arrays.copyOf(ends, ends.length * 2);
        }
      }
      starts[count] = start;
      ends[count] = end;
      count++;
    }
  }

  /**
   * Starts writeback of the ranges noted so far (one {@code sync_file_range(WRITE)} each) and
   * waits for nothing: called by a commit while an earlier one waits for its fdatasync, so that
   * its pages are on their way to the device when its own fdatasync begins. The next {@link
   * #commit} waits for them (its fdatasync covers the whole file) and fails if this did.
   */
  void start() {
    long[] s;
    long[] e;
    int n;
    synchronized (noted) {
      if (count == 0) {
        return;
      }
      n = merge(starts, ends, count);
      s = Arrays.copyOf(starts, n);
      e = Arrays.copyOf(ends, n);
      count = 0;
      started = true;
    }
    for (int i = 0; i < n; i++) {
      int rc = kernel.syncFileRange(fd, s[i], e[i] - s[i], SYNC_FILE_RANGE_WRITE);
      if (rc < 0 && startFailed == null) {
        startFailed = new NativeIOException("sync_file_range of the cache file [" + s[i] + ", "
            + e[i] + "): " + LibC.strerror(-rc), -rc);
      }
    }
  }

  /** pmem_commit: every range noted before this call is durable when it returns. */
  void commit() throws NativeIOException {
    commitLock.lock();
    try {
      if (failed != null) {
        throw failed;
      }
      long[] s;
      long[] e;
      int n;
      synchronized (noted) {
        if (count == 0 && !started) {
          return; // nothing flushed since the last commit: nothing to wait for
        }
        n = merge(starts, ends, count);
        s = Arrays.copyOf(starts, n);
        e = Arrays.copyOf(ends, n);
        count = 0;
        started = false;
      }
      try {
        for (int i = 0; i < n; i++) {
          check(kernel.syncFileRange(fd, s[i], e[i] - s[i], SYNC_FILE_RANGE_WRITE),
              "sync_file_range of the cache file [" + s[i] + ", " + e[i] + ")");
        }
        deviceFlushes.incrementAndGet();
        check(kernel.fdatasync(fd), "fdatasync of the cache file");
        if (startFailed != null) {
          throw startFailed; // a range started for this commit may not have been written
        }
      } catch (NativeIOException ex) {
        failed = ex;
        throw ex;
      }
    } finally {
      commitLock.unlock();
    }
  }

  private static void check(int rc, String what) throws NativeIOException {
    if (rc < 0) {
      throw new NativeIOException(what + ": " + LibC.strerror(-rc), -rc);
    }
  }

  /**
   * Sorts the first {@code n} ranges and merges overlapping and touching ones in place; returns
   * how many remain. Starts and ends are sorted apart: the union of ranges depends only on how
   * many begin and how many end before each point, which separate sorting keeps.
   */
  static int merge(long[] starts, long[] ends, int n) {
    if (n == 0) {
      return 0;
    }
    Arrays.sort(starts, 0, n);
    Arrays.sort(ends, 0, n);
    int out = 0;
    long from = starts[0];
    for (int i = 0; i < n; i++) {
      if (i + 1 < n && starts[i + 1] <= ends[i]) {
        continue; // the next range begins before this run of ranges ends
      }
      long to = ends[i];
      long next = i + 1 < n ? starts[i + 1] : 0;
      starts[out] = from;
      ends[out] = to;
      out++;
      from = next;
    }
    return out;
  }

  @Override
  public void close() throws NativeIOException {
    LibC.close(fd);
  }
}
