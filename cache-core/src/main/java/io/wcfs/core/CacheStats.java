package io.wcfs.core;

/**
 * A snapshot of the engine's counters: dm-writecache's status line, plus what a user of a
 * file cache asks next (dirty and uncommitted blocks, oldest dirty age, commit latency). One
 * part per group, each group made by the part that counts it (see {@link Counters}).
 *
 * @param error why the cache memory failed (writes and fsyncs then fail), or null
 */
public record CacheStats(String error, SpaceStats space, IoStats io, CommitStats commits,
    WritebackStats writeback, RecoveryStats recovery, JournalStats journal) {

  /**
   * The cache's blocks now: their size, how many in all, free, not yet written back (dirty),
   * written but not yet committed, the age of the oldest dirty one, and the writers waiting
   * for free blocks now.
   */
  public record SpaceStats(int blockSize, long blocks, long freeBlocks, long dirtyBlocks,
      long uncommittedBlocks, long oldestDirtyAgeMs, long writersWaiting) {}

  /**
   * Block reads and writes since mount: reads, reads served from the cache, writes, writes
   * over an uncommitted block (in place), over a committed block (copy-on-write), and writes
   * that took a free block.
   */
  public record IoStats(long reads, long readHits, long writes, long writeHitsUncommitted,
      long writeHitsCommitted, long writesAllocated) {}

  /**
   * The cache memory ({@code memory}: what it is and how a commit reaches it) and its
   * commits since mount: commits, the device flushes the memory issued (fdatasyncs of a cache
   * file on a disk), and the latency of the last 4096 commits.
   */
  public record CommitStats(String memory, long flushes, long deviceFlushes, long p50Nanos,
      long p99Nanos, long maxNanos) {}

  /**
   * Writeback: blocks being written back now, blocks written back since mount, backing-store
   * failures (retried) and the last one's message (or null), writers that had to wait
   * for writeback to free blocks, and files unlinked while open whose blocks were spilled out
   * of the cache to the backing filesystem (see Spill#spill).
   */
  public record WritebackStats(long inFlightBlocks, long writtenBackBlocks, long errors,
      String lastError, long writesBlockedOnFreelist, long spilledFiles) {}

  /**
   * What the last recovery did ({@code what}: which kind, what it kept), recovered files whose
   * path now leads to another inode number (a remounted network fs), and files whose blocks
   * had no path left to go to and were put in lost+found.
   */
  public record RecoveryStats(String what, long inodeHintMismatches, long lostAndFoundFiles) {}

  /**
   * The namespace journal: its size in records, records waiting to be applied to the backing
   * directory, records appended and applied since mount, files created and removed before
   * writeback reached them (they never touched the backing directory), namespace operations
   * that waited for room, names the overlay holds, and files it showed after the engine had
   * dropped them (a bug, logged; they were taken back, nothing lost).
   */
  public record JournalStats(long records, long pending, long appended, long applied,
      long createsElided, long fullWaits, long overlayNames, long strayFiles) {}
}
