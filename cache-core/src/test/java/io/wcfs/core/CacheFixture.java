package io.wcfs.core;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.Arrays;

/** Helpers for engine tests: heap byte arrays in and out of the native-address API. */
final class CacheFixture {
  private CacheFixture() {}

  private static final java.util.concurrent.atomic.AtomicLong BOOTS =
      new java.util.concurrent.atomic.AtomicLong(0x5eed_0000_0000L);

  /**
   * A boot id no cache was mounted in yet: opening with it after a simulated crash simulates a
   * power failure (a reboot), where only committed data counts. A daemon crash keeps the boot.
   */
  static long nextBoot() {
    return BOOTS.incrementAndGet();
  }

  static CacheConfig manualConfig(int blockSize) {
    // Commits only when the test (or a full cache) asks: deterministic crash points.
    return CacheConfig.DEFAULTS.withBlockSize(blockSize).withAutocommit(1 << 20, 1 << 30)
        .withWritebackJobs(8);
  }

  static CrashingMemory memoryFor(int nBlocks, int blockSize) {
    return new CrashingMemory((int) CacheLayout.Geometry.of(nBlocks, blockSize).fileSize());
  }

  /** A new empty file through the cache (journaled), closed. */
  static void create(WriteCache cache, String path) throws IOException {
    cache.close(cache.create(path, 0644, 0, 0, true));
  }

  static void write(WriteCache cache, String path, long offset, byte[] data) throws IOException {
    WriteCache.OpenFile h = cache.open(path);
    try (NativeBuffer buf = new NativeBuffer(data.length)) {
      buf.put(0, data, 0, data.length);
      cache.write(h, offset, buf.address(), data.length);
    } finally {
      cache.close(h);
    }
  }

  static byte[] read(WriteCache cache, String path) throws IOException {
    WriteCache.OpenFile h = cache.open(path);
    try {
      int size = (int) cache.size(h);
      try (NativeBuffer buf = new NativeBuffer(size)) {
        int n = cache.read(h, 0, buf.address(), size);
        byte[] out = new byte[n];
        buf.get(0, out, 0, n);
        return out;
      }
    } finally {
      cache.close(h);
    }
  }

  static byte[] apply(byte[] content, long offset, byte[] data) {
    int end = (int) Math.max(content.length, offset + data.length);
    byte[] out = Arrays.copyOf(content, end);
    System.arraycopy(data, 0, out, (int) offset, data.length);
    return out;
  }
}
