package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Epochs and commits: the open epoch that writes store into, group commit, what a commit
 * must flush (the epoch's blocks, entries and file versions), free (superseded slots and
 * released file slots, durably, after the commit point) and fsync first (backing directories
 * whose names changed; the backing files of write-through files and size-only changes
 * before that, by {@link BackingSyncs}), the autocommit clock, and the sticky cache-memory
 * error. The only caller of the memory's commit on the write side, and, with {@link
 * DurableFrees} (the durable-free sequence), the one place slots and file slots are freed on
 * the device. Fields marked "guarded by index" are guarded by the engine's index monitor
 * ({@link SlotTable}); the locks are ordered as {@link WriteCache} says.
 */
final class Epochs {
  private static final Logger LOG = LoggerFactory.getLogger(Epochs.class);

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final CacheConfig config;
  private final SlotTable table;
  private final FileRegistry files;
  private final Counters.Commits counters;
  private final BackingSyncs backingSyncs;

  /**
   * A commit record is for small epochs (the fsyncs of databases): a larger one is checksummed
   * longer than its second device flush would take, and commits in two steps.
   */
  private static final long MAX_CHECKSUMMED_BYTES = 1 << 20;

  /** Serializes commits; group commit: a waiter whose epoch was committed meanwhile returns. */
  private final ReentrantLock commitLock = new ReentrantLock();
  /** Writers hold it shared while storing into the open epoch; a commit holds it exclusively. */
  private final ReentrantReadWriteLock epochLock = new ReentrantReadWriteLock();
  // The open epoch's lists, guarded by index: what its commit flushes and frees.
  private IntList uncommitted = new IntList();
  private IntList dirtyVersions = new IntList();
  /** Guarded by index: journal records stored in the open epoch. */
  private IntList dirtyRecords = new IntList();
  private IntList pendingFree = new IntList();
  private IntList pendingFileFree = new IntList();
  /** Guarded by index: the open epoch dropped blocks ({@link #supersede}), not only replaced. */
  private boolean pendingDrops;
  /** The durable-free sequence: frees after a commit, unsettled frees, file-slot frees. */
  private final DurableFrees frees;
  /** Backing directories to fsync before the next commit point. */
  private final DirectorySyncs directories;
  /** Guarded by index: when the oldest uncommitted block was stored (autocommit's clock). */
  private long firstUncommittedNanos;
  /** Guarded by index. (epoch, nanoTime of its commit), oldest first: dirty blocks' age. */
  private final ArrayDeque<long[]> commitTimes = new ArrayDeque<>();
  /** The epoch new writes belong to; written under epochLock exclusively. */
  private volatile long openEpoch;
  /** Persisted seq_count: epochs below it are committed. Written under committedSignal. */
  private volatile long committedSeq;
  /** Notified when committedSeq grows or the cache fails ({@link #awaitCommitted}). */
  private final Object committedSignal = new Object();
  /**
   * Guarded by commitLock. The SeqCount word durable in the superblock: committedSeq, or
   * less after commits that commit records prove (their items stay as they are until this
   * passes their epoch: see {@link #settleCommitPoint}).
   */
  private long superblockSeq;
  /** Epochs commit with one memory commit and a commit record (see CacheLayout). */
  private final boolean commitRecords;
  /** The first cache-memory error; sticky, as dm-writecache's writecache_error. */
  private volatile IOException error;

  /** Guarded by index. Writeback waits for blocks to commit: a commit then wakes it. */
  private boolean writebackWaits;

  Epochs(CacheMemory mem, CacheLayout layout, BackingStore backing, CacheConfig config,
      SlotTable table, FileRegistry files, Counters.Commits counters, BackingSyncs backingSyncs) {
    this.mem = mem;
    this.layout = layout;
    this.backing = backing;
    this.config = config;
    this.table = table;
    this.files = files;
    this.counters = counters;
    this.backingSyncs = backingSyncs;
    this.commitRecords = layout.geometry().hasCommitRecords() && mem.commitFlushesDevice();
    this.directories = new DirectorySyncs(backing);
    this.frees = new DurableFrees(mem, layout, table, files, this::settleCommitPoint);
  }

  /** After recovery: the epoch to open and the commit point on the device. */
  void recovered(long seqCount) {
    openEpoch = seqCount;
    committedSeq = seqCount;
    superblockSeq = seqCount;
    commitTimes.addLast(new long[] {seqCount - 1, System.nanoTime()});
  }

  /**
   * How a commit reaches the device, for the backend line of status ("" on pmem, whose
   * commit is a fence): one device flush with a commit record, or two on a version 2 cache.
   */
  String commitMode() {
    if (commitRecords) {
      return "; commits: one device flush each (commit records), two for large ones";
    }
    return mem.commitFlushesDevice()
        ? "; commits: two device flushes each (a format version 2 cache has no commit records:"
            + " `wcfs writeback`, then `wcfs format --force`, for one)"
        : "";
  }

  long openEpoch() {
    return openEpoch;
  }

  long committedSeq() {
    return committedSeq;
  }

  /** Writers hold it shared while storing into the open epoch; a commit exclusively. */
  ReentrantReadWriteLock.ReadLock storing() {
    return epochLock.readLock();
  }

  /** Needs index. Uncommitted slots of the open epoch. */
  int uncommittedCount() {
    return uncommitted.size();
  }

  /** Needs index. Nanoseconds until autocommit is due (0: due now), or -1 if nothing waits. */
  long autocommitInNanos(long now) {
    if (uncommitted.isEmpty()) {
      return -1;
    }
    return Math.max(0, firstUncommittedNanos
        + TimeUnit.MILLISECONDS.toNanos(config.autocommitTimeMs()) - now);
  }

  /** Needs index. Whether commits should wake writeback (it waits for committed blocks). */
  void writebackWaits(boolean waits) {
    writebackWaits = waits;
  }

  /** Needs index. A file version stored in the open epoch, flushed by its commit. */
  void versionStored(int fileSlot, int version) {
    dirtyVersions.add(fileSlot * 2 + version);
  }

  /** Needs index. A journal record stored in the open epoch, flushed by its commit. */
  void recordStored(int index) {
    dirtyRecords.add(index);
  }

  /** Needs index. A file slot released in the open epoch, freed after its commit. */
  void fileSlotReleased(int fileSlot) {
    pendingFileFree.add(fileSlot);
  }

  /** Needs index. */
  void noteUncommitted(int slot) {
    if (uncommitted.isEmpty()) {
      firstUncommittedNanos = System.nanoTime();
    }
    uncommitted.add(slot);
  }

  /**
   * Needs index. A slot whose block was dropped (truncate, a zeroed range, an unlinked file):
   * freed durably by the next commit itself, before it returns. Nothing newer stands for the
   * block, so a free left for later could bring the old data back after a crash.
   */
  void supersede(int slot) {
    table.supersede(slot);
    pendingFree.add(slot);
    pendingDrops = true;
  }

  /**
   * Needs index. A slot whose block has a newer version in the open epoch: freed after the
   * next commit, durably by the memory commit after that (see {@link
   * DurableFrees#releaseSlots}); until then recovery keeps the newer version over it.
   */
  void replaced(int slot) {
    table.supersede(slot);
    pendingFree.add(slot);
  }

  /**
   * fsync: makes every write that returned before this call durable. Concurrent callers share
   * one commit (group commit): a caller whose epoch another caller committed meanwhile returns.
   */
  void commit() throws IOException {
    checkError();
    long ticket = backingSyncs.ticket();
    long target = openEpoch;
    backingSyncs.syncBackingFiles(ticket);
    if (!commitLock.tryLock()) {
      mem.beforeWait();
      if (mem.commitFlushesDevice()) {
        startOpenBlocks(); // another commit waits for the device: our data travels meanwhile
      }
      commitLock.lock();
    }
    try {
      // The commit we waited for may have failed. Our writes may have been in its epoch, and
      // the empty epoch it left open would let us return as if they were durable.
      checkError();
      if (openEpoch > target && committedSeq <= target) {
        // Sealed under commitLock, yet neither committed nor failed: what sealed it ended
        // with something no catch latched (an Error). Fail rather than vouch for it.
        throw fail(new IOException("the commit of epoch " + target + " did not finish"));
      }
      boolean dirsDirty;
      synchronized (table) {
        dirsDirty = directories.dirty();
      }
      // Group commit: an epoch committed meanwhile covers our writes, but not a name changed
      // after that commit took its directories.
      if ((committedSeq > target && !dirsDirty) || nothingToCommit()) {
        return;
      }
      commitEpoch();
    } finally {
      commitLock.unlock();
    }
  }

  /**
   * Flushes the data blocks the open epoch stored so far and starts them towards the device,
   * without sealing it: the fsyncs arriving while a commit waits for its device flush still
   * join the one commit that follows it (sealing here would split that group: measured
   * slower), but their data is written meanwhile, and that commit's own flush finds it on the
   * device. Only data blocks: the pages of entries and file versions are stored again by
   * nearly every write (several entries share a page, a file's size and mtime change with
   * each), so writing them early would write most of them twice; a data block is rewritten
   * only when the same block is written again in the epoch. Harmless to what recovery finds:
   * a block counts only through its entry, which is flushed by the commit, after sealing, and
   * the commit flushes the block again, so a store after this flush is covered too.
   */
  private void startOpenBlocks() throws IOException {
    int[] blocks;
    synchronized (table) {
      blocks = uncommitted.toArray();
    }
    if (blocks.length == 0) {
      return;
    }
    try {
      for (int b : blocks) {
        layout.flushBlock(b);
      }
      mem.startCommit();
    } catch (IOException | RuntimeException ex) {
      throw fail(ex);
    }
  }

  private boolean nothingToCommit() {
    synchronized (table) {
      return openEpochEmpty() && !directories.dirty();
    }
  }

  /**
   * Needs the table lock. Whether the open epoch stored nothing the cache commits: no entry,
   * file version or journal record, and no free waiting for a commit.
   */
  private boolean openEpochEmpty() {
    return uncommitted.isEmpty() && dirtyVersions.isEmpty() && dirtyRecords.isEmpty()
        && pendingFree.isEmpty() && pendingFileFree.isEmpty();
  }

  /** Records that the entries of {@code path}'s parent directory changed (see DirectorySyncs). */
  void namespaceChanged(String path) {
    directories.changed(path);
  }

  /** Records a rename made in the backing directory (see DirectorySyncs). */
  void namespaceRenamed(String from, String to) {
    directories.renamed(from, to);
  }

  /**
   * DESIGN.md's commit sequence. epochLock is held exclusively only to sync directories and
   * seal the epoch (take its lists, open the next one); the flushes and the device's wait run
   * while writers store into the next epoch, so that the fsyncs arriving meanwhile share the
   * next commit instead of waiting in line to write. What the sealed epoch stored is not
   * touched again until it is committed: its slots are COMMITTING (a write copies them to a new
   * slot), a file version of it is rewritten only after the commit (awaitCommitted), and
   * journal records are new slots of the ring.
   */
  private void commitEpoch() throws IOException {
    long startNanos = System.nanoTime();
    Sealed sealed;
    epochLock.writeLock().lock();
    try {
      directories.sync(); // 0. names first: what this epoch commits may rely on them
      sealed = seal();
    } finally {
      epochLock.writeLock().unlock();
    }
    if (sealed != null) {
      commitSealed(sealed, startNanos);
    }
  }

  /** What a sealed epoch commits and then frees. */
  private record Sealed(long epoch, IntList blocks, IntList versions, IntList records,
      IntList frees, IntList fileFrees, boolean drops) {}

  /** Needs epochLock exclusively. Null if the epoch stored nothing (only directories). */
  private Sealed seal() {
    long epoch = openEpoch;
    synchronized (table) {
      if (openEpochEmpty()) {
        return null; // only directories to sync (a new empty file's name): no cache commit
      }
      Sealed sealed = new Sealed(epoch, uncommitted, dirtyVersions, dirtyRecords, pendingFree,
          pendingFileFree, pendingDrops);
      uncommitted = new IntList();
      dirtyVersions = new IntList();
      dirtyRecords = new IntList();
      pendingFree = new IntList();
      pendingFileFree = new IntList();
      pendingDrops = false;
      for (int i = 0; i < sealed.blocks.size(); i++) {
        table.sealed(sealed.blocks.get(i));
      }
      openEpoch = epoch + 1;
      return sealed;
    }
  }

  /** Needs commitLock. Commits a sealed epoch; writers meanwhile store into the next one. */
  private void commitSealed(Sealed e, long startNanos) throws IOException {
    try {
      long epoch = e.epoch;
      IntList blocks = e.blocks;
      IntList versions = e.versions;
      IntList records = e.records;
      // 1. pmem_flush every block, entry, file version and journal record of the epoch, then
      // pmem_commit: all of it durable before the commit point makes any of it count.
      for (int i = 0; i < blocks.size(); i++) {
        layout.flushBlock(blocks.get(i));
        layout.flushEntry(blocks.get(i));
      }
      for (int i = 0; i < versions.size(); i++) {
        layout.flushFileVersion(versions.get(i) / 2, versions.get(i) % 2);
      }
      for (int i = 0; i < records.size(); i++) {
        layout.flushRecord(records.get(i));
      }
      int items = blocks.size() + versions.size() + records.size();
      if (commitRecords && items <= CommitRecords.MAX_ITEMS && e.fileFrees.isEmpty()
          && !e.drops
          && (long) blocks.size() * layout.geometry().blockSize() <= MAX_CHECKSUMMED_BYTES) {
        // 1+2 in one memory commit (one device flush): the commit record lists what the epoch
        // stored with checksums, and recovery counts the epoch only if all of it landed; a
        // whole record also proves every epoch before it, so SeqCount is not stored (a page
        // less for the device flush) until someone frees a committed item. Epochs that free
        // at once (drops, file slots) take two steps: what they free may be what the record
        // lists.
        layout.commitRecords().store(epoch, blocks, versions, records);
        commitMemory(); // also makes the previous commit's frees durable
      } else {
        commitMemory(); // also makes the previous commit's frees durable
        // 2. The commit point: seq_count = epoch + 1, one atomic store, flushed and committed.
        layout.storeSeqCount(epoch + 1);
        mem.commit();
        superblockSeq = epoch + 1;
      }
      synchronized (committedSignal) {
        committedSeq = epoch + 1;
        committedSignal.notifyAll();
      }
      // 3. Old versions the epoch replaced, then file slots it released, freed in that order.
      frees.releaseSlots(e.frees, e.fileFrees, e.drops);
      synchronized (table) {
        for (int i = 0; i < blocks.size(); i++) {
          table.committed(blocks.get(i));
        }
        commitTimes.addLast(new long[] {epoch, System.nanoTime()});
        oldestDirtyAgeNanos(System.nanoTime()); // prunes commitTimes
        counters.took(System.nanoTime() - startNanos);
        // Wake writeback only when it waits for committed blocks: a wakeup per fsync costs
        // a context switch, which on a 2-core machine is more than the commit itself.
        if (writebackWaits || table.usedPercentAbove(config.highWatermark())) {
          table.notifyAll();
        }
      }
    } catch (IOException | RuntimeException ex) {
      throw fail(ex);
    }
  }

  /**
   * Waits until {@code epoch} is committed (a sealed epoch's commit is running), or the cache
   * failed. For a writer about to rewrite a file version that epoch stored.
   */
  void awaitCommitted(long epoch) throws IOException {
    synchronized (committedSignal) {
      while (committedSeq <= epoch) {
        checkError();
        try {
          committedSignal.wait(100);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw new java.io.InterruptedIOException("interrupted waiting for a commit");
        }
      }
    }
  }

  /** See {@link DurableFrees#commitMemory}. */
  void commitMemory() throws IOException {
    frees.commitMemory();
  }

  /** See {@link DurableFrees#settleFrees}. */
  void settleFrees() throws IOException {
    frees.settleFrees();
  }

  /**
   * Makes SeqCount in the superblock durable up to the committed epochs. After commits that
   * commit records prove it lags behind, and a record's proof holds only while every item it
   * lists holds what it did: a free of such an item (writeback's, the journal's)
   * made durable before SeqCount passes its epoch would leave a record that no longer proves
   * anything, and a crash would lose the epoch. So whoever frees a committed item settles
   * this first; commits themselves free only what older epochs stored.
   */
  void settleCommitPoint() throws IOException {
    if (!commitRecords) {
      return;
    }
    commitLock.lock();
    try {
      long committed = committedSeq;
      if (superblockSeq >= committed) {
        return;
      }
      layout.storeSeqCount(committed);
      commitMemory();
      superblockSeq = committed;
    } catch (IOException | RuntimeException e) {
      throw fail(e);
    } finally {
      commitLock.unlock();
    }
  }

  /** See {@link DurableFrees#storeFileSlotFree}. */
  void storeFileSlotFree(int fileSlot) throws IOException {
    frees.storeFileSlotFree(fileSlot);
  }

  /** Needs index. How long the oldest dirty block has been committed. */
  long oldestDirtyAgeNanos(long now) throws IOException {
    if (table.oldest() < 0) {
      while (commitTimes.size() > 1) {
        commitTimes.pollFirst();
      }
      return 0;
    }
    long seq = layout.entrySeq(table.oldest());
    while (commitTimes.size() > 1 && commitTimes.peekFirst()[0] < seq) {
      commitTimes.pollFirst();
    }
    long[] first = commitTimes.peekFirst();
    return first == null || first[0] < seq ? 0 : now - first[1];
  }

  void checkError() throws IOException {
    IOException e = error;
    if (e != null) {
      throw new CacheErrorException(e);
    }
  }

  /** Latches the first cache-memory failure: later writes and commits fail, reads go on. */
  IOException fail(Exception e) {
    IOException io = e instanceof IOException ? (IOException) e : new IOException(e.toString(), e);
    synchronized (table) {
      if (error == null) {
        error = io;
        LOG.error("cache memory failed; writes and fsync now fail with EIO, reads continue", e);
      }
      table.notifyAll();
    }
    synchronized (committedSignal) {
      committedSignal.notifyAll();
    }
    return new CacheErrorException(io);
  }

  /** The latched cache error, or null. */
  IOException error() {
    return error;
  }

  /** Stops as a crash would: later writes and commits fail (tests, fatal errors). */
  void abandon() {
    synchronized (table) {
      error = error != null ? error : new IOException("cache abandoned");
      table.notifyAll();
    }
  }
}
