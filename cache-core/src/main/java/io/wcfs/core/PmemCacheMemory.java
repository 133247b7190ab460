package io.wcfs.core;

import io.wcfs.nativ.FlushStrategy;
import io.wcfs.nativ.PersistentMemory;
import java.io.IOException;
import java.nio.file.Path;

/** {@link CacheMemory} over a mapped cache file (libpmem, or the mmap fallback). */
public final class PmemCacheMemory implements CacheMemory {
  private final PersistentMemory pm;
  /** Runs before a commit that waits for the device (see {@link #beforeDeviceWait}). */
  private volatile Runnable beforeDeviceWait = () -> {};

  public PmemCacheMemory(PersistentMemory pm) {
    this.pm = pm;
  }

  /**
   * What to run before each commit that waits for the device (a page-cache mapping's
   * fdatasync), and before a commit waits for another one's ({@link #beforeWait}): the daemon
   * hands its FUSE leadership to another thread there, as before backing I/O, so that
   * requests arriving during the ~100 µs wait are received, and the fsyncs among them share
   * the next commit instead of queueing behind this one.
   */
  public void beforeDeviceWait(Runnable hook) {
    beforeDeviceWait = hook;
  }

  public static PmemCacheMemory open(Path file, FlushStrategy strategy, boolean forceFallback)
      throws IOException {
    return new PmemCacheMemory(PersistentMemory.map(file, strategy, forceFallback));
  }

  public PersistentMemory persistentMemory() {
    return pm;
  }

  @Override
  public long size() {
    return pm.size();
  }

  @Override
  public void copyIn(long offset, long srcAddress, long length) throws IOException {
    pm.memcpy(offset, srcAddress, length);
  }

  @Override
  public void assign(long offset, long value) throws IOException {
    pm.assign(offset, value);
  }

  @Override
  public void assign2(long offset, long first, long second) throws IOException {
    pm.assign2(offset, first, second);
  }

  @Override
  public void flush(long offset, long length) {
    pm.flush(offset, length);
  }

  @Override
  public void commit() throws IOException {
    if (pm.commitFlushesDevice()) {
      beforeDeviceWait.run();
    }
    pm.commit();
  }

  @Override
  public void startCommit() throws IOException {
    pm.startCommit();
  }

  @Override
  public void beforeWait() {
    if (pm.commitFlushesDevice()) {
      beforeDeviceWait.run();
    }
  }

  @Override
  public long deviceFlushes() {
    return pm.deviceFlushes();
  }

  @Override
  public boolean commitFlushesDevice() {
    return pm.commitFlushesDevice();
  }

  @Override
  public long readLong(long offset) {
    return pm.readLong(offset);
  }

  @Override
  public long address() {
    return pm.address();
  }

  @Override
  public void copyOut(long offset, long dstAddress, long length) {
    pm.read(offset, dstAddress, length);
  }

  @Override
  public String describe() {
    return pm.describe();
  }

  @Override
  public void close() throws IOException {
    pm.close();
  }
}
