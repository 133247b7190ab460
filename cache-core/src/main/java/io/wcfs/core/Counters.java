package io.wcfs.core;

import java.util.Arrays;
import java.util.concurrent.atomic.LongAdder;

/**
 * The engine's counters (dm-writecache's, plus what a file cache's user asks next) and the
 * commit latency window; {@link #snapshot} makes the one {@link CacheStats} of them. Adders
 * need no lock; the latency window is guarded by this object's monitor.
 */
final class Counters {
  final LongAdder reads = new LongAdder();
  final LongAdder readHits = new LongAdder();
  final LongAdder writes = new LongAdder();
  final LongAdder writeHitsUncommitted = new LongAdder();
  final LongAdder writeHitsCommitted = new LongAdder();
  final LongAdder writesAllocated = new LongAdder();
  final LongAdder writesBlocked = new LongAdder();
  final LongAdder flushes = new LongAdder();
  final LongAdder writtenBack = new LongAdder();
  final LongAdder writebackErrors = new LongAdder();
  /** Recovered files whose path now leads to another inode number (a remounted network fs). */
  final LongAdder inodeHintMismatches = new LongAdder();
  /** Files whose blocks had no path left to go to and were put in lost+found. */
  final LongAdder lostAndFound = new LongAdder();
  final LongAdder journalRecords = new LongAdder();
  final LongAdder journalApplied = new LongAdder();
  final LongAdder createsElided = new LongAdder();
  final LongAdder journalFullWaits = new LongAdder();
  private volatile String lastWritebackError;
  /** What the last recovery did: which kind (same boot or after a reboot), what it kept. */
  private volatile String recovery = "none";

  /** The last 4096 commit latencies (ns), a ring. Guarded by this. */
  private final long[] commitLatencies = new long[4096];
  private long commitLatencyCount;
  private long commitLatencyMax;

  void writebackFailed(String message) {
    writebackErrors.increment();
    lastWritebackError = message;
  }

  void recovered(String what) {
    recovery = what;
  }

  String lastWritebackError() {
    return lastWritebackError;
  }

  synchronized void commitTook(long nanos) {
    flushes.increment();
    commitLatencies[(int) (commitLatencyCount++ % commitLatencies.length)] = nanos;
    commitLatencyMax = Math.max(commitLatencyMax, nanos);
  }

  /** What the engine's live state adds to the counters at the moment of the snapshot. */
  record Live(String error, long blocks, long freeBlocks, long writebackInFlight,
      long dirtyBlocks, long uncommittedBlocks, long oldestDirtyAgeMs, long blockedWriters,
      int blockSize, String memory, long deviceFlushes, long journalCapacity,
      long journalPending, long overlayNames) {}

  synchronized CacheStats snapshot(Live live) {
    long[] lat = Arrays.copyOf(commitLatencies,
        (int) Math.min(commitLatencyCount, commitLatencies.length));
    Arrays.sort(lat);
    long p50 = lat.length == 0 ? 0 : lat[(int) ((lat.length - 1) * 0.50)];
    long p99 = lat.length == 0 ? 0 : lat[(int) ((lat.length - 1) * 0.99)];
    return new CacheStats(live.error(), live.blocks(), live.freeBlocks(),
        live.writebackInFlight(), reads.sum(), readHits.sum(), writes.sum(),
        writeHitsUncommitted.sum(), writeHitsCommitted.sum(), writesAllocated.sum(),
        writesBlocked.sum(), flushes.sum(), live.dirtyBlocks(), live.uncommittedBlocks(),
        live.oldestDirtyAgeMs(), p50, p99, commitLatencyMax, writtenBack.sum(),
        writebackErrors.sum(), lastWritebackError, live.blockedWriters(), live.blockSize(),
        live.memory(), inodeHintMismatches.sum(), lostAndFound.sum(), recovery,
        live.deviceFlushes(), new CacheStats.JournalStats(live.journalCapacity(),
            live.journalPending(), journalRecords.sum(), journalApplied.sum(),
            createsElided.sum(), journalFullWaits.sum(), live.overlayNames()));
  }
}
