package io.wcfs.core;

/**
 * A snapshot of the engine's counters: dm-writecache's status line, plus what a user of a
 * file cache asks next (dirty and uncommitted blocks, oldest dirty age, commit latency).
 */
public record CacheStats(
    String error,
    long blocks,
    long freeBlocks,
    long writebackBlocks,
    long reads,
    long readHits,
    long writes,
    long writeHitsUncommitted,
    long writeHitsCommitted,
    long writesAllocated,
    long writesBlockedOnFreelist,
    long flushes,
    long dirtyBlocks,
    long uncommittedBlocks,
    long oldestDirtyAgeMs,
    long commitP50Nanos,
    long commitP99Nanos,
    long commitMaxNanos,
    long writtenBackBlocks,
    long writebackErrors,
    String lastWritebackError,
    long blockedWriters,
    int blockSize,
    String memory,
    long inodeHintMismatches,
    long lostAndFoundFiles,
    String recovery,
    /** Device flushes the cache memory issued (fdatasyncs of a cache file on a disk). */
    long deviceFlushes,
    JournalStats journal) {

  /**
   * The namespace journal: its size in records, records waiting to be applied to the backing
   * directory, records appended and applied since mount, files created and removed before
   * writeback reached them (they never touched the backing directory), namespace operations
   * that waited for room, and names the overlay holds.
   */
  public record JournalStats(long records, long pending, long appended, long applied,
      long createsElided, long fullWaits, long overlayNames) {}
}
