package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class WritebackPolicyTest {
  private static final CacheConfig CFG = CacheConfig.DEFAULTS.withMaxAge(30_000);

  private static WritebackPolicy.Decision decide(boolean above, boolean below, boolean was,
      boolean draining, boolean waiting, long ageMs, boolean backingOff, boolean failed) {
    return WritebackPolicy.decide(new WritebackPolicy.State(above, below, was, draining,
        waiting, ageMs, backingOff, failed), CFG);
  }

  @Test
  @DisplayName("watermarks: starts above high, keeps going until below low")
  void hysteresis() {
    assertEquals(new WritebackPolicy.Decision(false, false),
        decide(false, false, false, false, false, 0, false, false), "idle between the marks");
    assertEquals(new WritebackPolicy.Decision(true, true),
        decide(true, false, false, false, false, 0, false, false), "above high: start");
    assertEquals(new WritebackPolicy.Decision(true, true),
        decide(false, false, true, false, false, 0, false, false), "between: keep going");
    assertEquals(new WritebackPolicy.Decision(false, false),
        decide(false, true, true, false, false, 0, false, false), "below low: stop");
  }

  @Test
  @DisplayName("drain, waiting writers and old blocks write back below the watermarks")
  void otherReasons() {
    assertEquals(true, decide(false, true, false, true, false, 0, false, false).write());
    assertEquals(true, decide(false, true, false, false, true, 0, false, false).write());
    assertEquals(true, decide(false, true, false, false, false, 30_000, false, false).write());
    assertEquals(false, decide(false, true, false, false, false, 29_999, false, false).write());
    assertEquals(false, WritebackPolicy.decide(new WritebackPolicy.State(false, true, false,
        false, false, 1 << 30, false, false), CFG.withMaxAge(0)).write(), "max_age 0 = off");
  }

  @Test
  @DisplayName("never while backing off or after a cache error")
  void holdsOff() {
    assertEquals(false, decide(true, false, true, true, true, 1 << 30, true, false).write());
    assertEquals(false, decide(true, false, true, true, true, 1 << 30, false, true).write());
  }
}
