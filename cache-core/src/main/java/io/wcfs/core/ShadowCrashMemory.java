package io.wcfs.core;

import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/**
 * Test-only cache memory for end-to-end crash tests of a real mount: it keeps a shadow file
 * holding only what a commit made durable. Every {@link #flush}ed range is copied to the shadow
 * at the next {@link #commit}; stores never flushed never reach it. After the daemon is killed,
 * copying the shadow over the cache file gives what persistent memory would have kept, so a
 * kill in the middle of a commit checks the engine's flush/commit order through FUSE. It models
 * the cache on a disk as well as on pmem: a store counts only once a commit followed its
 * flush; a kill inside a commit keeps a prefix of that commit's ranges (CrashingMemory, in
 * the engine's tests, tears at the word instead).
 * Enabled by the daemon only when WCFS_TEST_CRASH_SHADOW=1.
 */
public final class ShadowCrashMemory implements CacheMemory {
  private final CacheMemory inner;
  private final int shadowFd;
  private final List<long[]> flushed = new ArrayList<>();
  /**
   * Held by a commit from its inner commit to the end of its copy: a commit that finds the
   * ranges taken by one still copying them waits for it, so that every range flushed before a
   * commit began is in the shadow when it returns (the contract of {@link #commit}). Without
   * it a concurrent commit (writeback's frees, an fsync) returned at once, and a kill then
   * could keep its later stores without earlier ones it relied on.
   */
  private final Object commitLock = new Object();

  private ShadowCrashMemory(CacheMemory inner, int shadowFd) {
    this.inner = inner;
    this.shadowFd = shadowFd;
  }

  /** The shadow of {@code cacheFile}: what survives a crash of this process. */
  public static Path shadowOf(Path cacheFile) {
    return cacheFile.resolveSibling(cacheFile.getFileName() + ".durable");
  }

  /** Wraps {@code inner}, starting the shadow as a copy of the cache file as it is now. */
  public static ShadowCrashMemory wrap(CacheMemory inner, Path cacheFile) throws IOException {
    Path shadow = shadowOf(cacheFile);
    Files.copy(cacheFile, shadow, StandardCopyOption.REPLACE_EXISTING);
    return new ShadowCrashMemory(inner, LibC.open(shadow.toString(), LibC.O_RDWR, 0));
  }

  @Override
  public boolean commitFlushesDevice() {
    return inner.commitFlushesDevice();
  }

  @Override
  public long size() {
    return inner.size();
  }

  @Override
  public void copyIn(long offset, long srcAddress, long length) throws IOException {
    inner.copyIn(offset, srcAddress, length);
  }

  @Override
  public void assign(long offset, long value) throws IOException {
    inner.assign(offset, value);
  }

  @Override
  public void assign2(long offset, long first, long second) throws IOException {
    inner.assign2(offset, first, second);
  }

  @Override
  public void flush(long offset, long length) throws IOException {
    inner.flush(offset, length);
    synchronized (flushed) {
      flushed.add(new long[] {offset, length});
    }
  }

  @Override
  public void commit() throws IOException {
    synchronized (commitLock) {
      inner.commit();
      List<long[]> ranges;
      synchronized (flushed) {
        ranges = new ArrayList<>(flushed);
        flushed.clear();
      }
      for (long[] r : ranges) {
        try (NativeBuffer buf = new NativeBuffer(r[1])) {
          inner.copyOut(r[0], buf.address(), r[1]);
          LibC.pwrite(shadowFd, buf.address(), r[1], r[0]);
        }
      }
    }
  }

  @Override
  public long deviceFlushes() {
    return inner.deviceFlushes();
  }

  @Override
  public long readLong(long offset) throws IOException {
    return inner.readLong(offset);
  }

  @Override
  public void copyOut(long offset, long dstAddress, long length) throws IOException {
    inner.copyOut(offset, dstAddress, length);
  }

  @Override
  public String describe() {
    return inner.describe() + ", TEST crash shadow (only committed flushes survive a kill)";
  }

  @Override
  public void close() throws IOException {
    LibC.close(shadowFd);
    inner.close();
  }
}
