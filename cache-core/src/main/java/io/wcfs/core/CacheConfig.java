package io.wcfs.core;

/**
 * The engine's tunables, with dm-writecache's names and defaults; validated on construction.
 *
 * @param blockSize cache block size in bytes (power of two, 512..1 MiB; used at format time)
 * @param highWatermark writeback starts when more than this percentage of blocks is used
 * @param lowWatermark writeback stops when usage falls below this percentage
 * @param writebackJobs blocks in flight per writeback batch (bounds writeback memory)
 * @param autocommitBlocks commit after this many uncommitted blocks
 * @param autocommitTimeMs commit uncommitted blocks older than this
 * @param maxAgeMs write back blocks older than this, whatever the watermarks (0 = never); by
 *     default 30 s, the kernel's own dirty expiry, so that the backing directory never lags
 *     without bound below the high watermark
 * @param cleaner write back everything and keep the cache empty
 */
public record CacheConfig(
    int blockSize,
    int highWatermark,
    int lowWatermark,
    int writebackJobs,
    int autocommitBlocks,
    long autocommitTimeMs,
    long maxAgeMs,
    boolean cleaner) {

  /** The default {@code maxAgeMs}: the kernel's dirty_expire_centisecs (30 s). */
  public static final long DEFAULT_MAX_AGE_MS = 30_000;

  public static final CacheConfig DEFAULTS =
      new CacheConfig(4096, 50, 45, 1024, 64, 1000, DEFAULT_MAX_AGE_MS, false);

  public CacheConfig {
    CacheLayout.checkBlockSize(blockSize);
    if (highWatermark < 0 || highWatermark > 100) {
      throw new IllegalArgumentException(
          "high watermark " + highWatermark + " is not a percentage (0..100)");
    }
    if (lowWatermark < 0 || lowWatermark > 100) {
      throw new IllegalArgumentException(
          "low watermark " + lowWatermark + " is not a percentage (0..100)");
    }
    if (highWatermark < lowWatermark) {
      throw new IllegalArgumentException("high watermark " + highWatermark
          + " is below low watermark " + lowWatermark + "; the high one must be at least the low");
    }
    if (writebackJobs < 1) {
      throw new IllegalArgumentException("writeback jobs " + writebackJobs + " must be at least 1");
    }
    if (autocommitBlocks < 1) {
      throw new IllegalArgumentException(
          "autocommit blocks " + autocommitBlocks + " must be at least 1");
    }
    if (autocommitTimeMs < 1) {
      throw new IllegalArgumentException(
          "autocommit time " + autocommitTimeMs + " ms must be at least 1 ms");
    }
    if (maxAgeMs < 0) {
      throw new IllegalArgumentException("max age " + maxAgeMs + " ms must not be negative");
    }
  }

  public CacheConfig withBlockSize(int v) {
    return new CacheConfig(v, highWatermark, lowWatermark, writebackJobs, autocommitBlocks,
        autocommitTimeMs, maxAgeMs, cleaner);
  }

  public CacheConfig withWatermarks(int high, int low) {
    return new CacheConfig(blockSize, high, low, writebackJobs, autocommitBlocks,
        autocommitTimeMs, maxAgeMs, cleaner);
  }

  public CacheConfig withAutocommit(int blocks, long timeMs) {
    return new CacheConfig(blockSize, highWatermark, lowWatermark, writebackJobs, blocks, timeMs,
        maxAgeMs, cleaner);
  }

  public CacheConfig withWritebackJobs(int jobs) {
    return new CacheConfig(blockSize, highWatermark, lowWatermark, jobs, autocommitBlocks,
        autocommitTimeMs, maxAgeMs, cleaner);
  }

  public CacheConfig withMaxAge(long ms) {
    return new CacheConfig(blockSize, highWatermark, lowWatermark, writebackJobs, autocommitBlocks,
        autocommitTimeMs, ms, cleaner);
  }

  public CacheConfig withCleaner(boolean on) {
    return new CacheConfig(blockSize, highWatermark, lowWatermark, writebackJobs, autocommitBlocks,
        autocommitTimeMs, maxAgeMs, on);
  }
}
