package io.wcfs.core;

import java.util.Arrays;
import java.util.concurrent.atomic.LongAdder;

/**
 * The engine's live counters, one group per part that counts: each part is handed its group
 * (and no other), and each group makes its own part of a {@link CacheStats} snapshot, adding
 * what the engine's live state says at that moment. Adders need no lock.
 */
final class Counters {
  /** Counted by {@link DataPath}. */
  final Io io = new Io();
  /** Counted by {@link Epochs}. */
  final Commits commits = new Commits();
  /** Counted by {@link io.wcfs.core.Writeback}. */
  final Writeback writeback = new Writeback();
  /** Counted by {@link io.wcfs.core.Recovery} and {@link LostAndFound}. */
  final Recovery recovery = new Recovery();
  /** Counted by {@link io.wcfs.core.Journal} and {@link JournalApplier}. */
  final Journal journal = new Journal();

  static final class Io {
    final LongAdder reads = new LongAdder();
    final LongAdder readHits = new LongAdder();
    final LongAdder writes = new LongAdder();
    final LongAdder writeHitsUncommitted = new LongAdder();
    final LongAdder writeHitsCommitted = new LongAdder();
    final LongAdder writesAllocated = new LongAdder();

    CacheStats.IoStats snapshot() {
      return new CacheStats.IoStats(reads.sum(), readHits.sum(), writes.sum(),
          writeHitsUncommitted.sum(), writeHitsCommitted.sum(), writesAllocated.sum());
    }
  }

  /** Commits and the commit latency window; the window is guarded by this object's monitor. */
  static final class Commits {
    private final LongAdder flushes = new LongAdder();
    /** The last 4096 commit latencies (ns), a ring. Guarded by this. */
    private final long[] latencies = new long[4096];
    private long latencyCount;
    private long latencyMax;

    synchronized void took(long nanos) {
      flushes.increment();
      latencies[(int) (latencyCount++ % latencies.length)] = nanos;
      latencyMax = Math.max(latencyMax, nanos);
    }

    /** {@code memory}: the cache memory and how a commit reaches it; and its device flushes. */
    synchronized CacheStats.CommitStats snapshot(String memory, long deviceFlushes) {
      long[] lat = Arrays.copyOf(latencies, (int) Math.min(latencyCount, latencies.length));
      Arrays.sort(lat);
      long p50 = lat.length == 0 ? 0 : lat[(int) ((lat.length - 1) * 0.50)];
      long p99 = lat.length == 0 ? 0 : lat[(int) ((lat.length - 1) * 0.99)];
      return new CacheStats.CommitStats(memory, flushes.sum(), deviceFlushes, p50, p99,
          latencyMax);
    }
  }

  static final class Writeback {
    final LongAdder writtenBack = new LongAdder();
    /** Writers that found too few free blocks and waited for writeback. */
    final LongAdder writesBlocked = new LongAdder();
    /** Files unlinked while open whose blocks were spilled to the backing filesystem. */
    final LongAdder spilled = new LongAdder();
    private final LongAdder errors = new LongAdder();
    private volatile String lastError;

    void failed(String message) {
      errors.increment();
      lastError = message;
    }

    String lastError() {
      return lastError;
    }

    CacheStats.WritebackStats snapshot(long inFlightBlocks) {
      return new CacheStats.WritebackStats(inFlightBlocks, writtenBack.sum(), errors.sum(),
          lastError, writesBlocked.sum(), spilled.sum());
    }
  }

  static final class Recovery {
    /** Recovered files whose path now leads to another inode number (a remounted network fs). */
    final LongAdder inodeHintMismatches = new LongAdder();
    /** Files whose blocks had no path left to go to and were put in lost+found. */
    final LongAdder lostAndFound = new LongAdder();
    /** What the last recovery did: which kind (same boot or after a reboot), what it kept. */
    private volatile String what = "none";

    void recovered(String what) {
      this.what = what;
    }

    CacheStats.RecoveryStats snapshot() {
      return new CacheStats.RecoveryStats(what, inodeHintMismatches.sum(), lostAndFound.sum());
    }
  }

  static final class Journal {
    final LongAdder appended = new LongAdder();
    final LongAdder applied = new LongAdder();
    final LongAdder createsElided = new LongAdder();
    final LongAdder fullWaits = new LongAdder();
    /** Files the overlay showed after the engine had dropped them: a bug, each one logged. */
    final LongAdder strayFiles = new LongAdder();

    /** The journal's size in records, records not yet applied, names the overlay holds. */
    CacheStats.JournalStats snapshot(long records, long pending, long overlayNames) {
      return new CacheStats.JournalStats(records, pending, appended.sum(), applied.sum(),
          createsElided.sum(), fullWaits.sum(), overlayNames, strayFiles.sum());
    }
  }
}
