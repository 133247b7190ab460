package io.wcfs.core;

/**
 * When writeback runs, as a pure function of the cache's state (dm-writecache's rules): it
 * starts above the high watermark and, once started, goes on until usage falls below the low
 * watermark; it also runs while draining (flush, unmount, cleaner mode), while writers wait
 * for free blocks, and for blocks older than max_age; never while backing off after a
 * backing-store error or after a cache-memory error.
 */
final class WritebackPolicy {
  private WritebackPolicy() {}

  /** What the decision looks at. */
  record State(boolean aboveHighWatermark, boolean belowLowWatermark, boolean wasActive,
      boolean draining, boolean writersWaiting, long oldestDirtyAgeMs, boolean backingOff,
      boolean failed) {}

  /** {@code active}: the watermark hysteresis; {@code write}: take a batch now. */
  record Decision(boolean active, boolean write) {}

  static Decision decide(State s, CacheConfig config) {
    boolean active = s.aboveHighWatermark() || (s.wasActive() && !s.belowLowWatermark());
    boolean aged = config.maxAgeMs() > 0 && s.oldestDirtyAgeMs() >= config.maxAgeMs();
    boolean write = (s.draining() || active || s.writersWaiting() || aged) && !s.backingOff()
        && !s.failed();
    return new Decision(active, write);
  }
}
