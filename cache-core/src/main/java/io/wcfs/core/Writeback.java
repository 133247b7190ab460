package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writeback: the thread that copies committed blocks to the backing files (oldest first, in
 * batches grouped per file and sorted by block), makes them durable there (fsync, size,
 * mtime), both through {@link BackingCopier}, and only then frees their slots; when it runs
 * is {@link WritebackPolicy}'s decision. Also drains the cache for flush and unmount, writes
 * one file back whole before a rename or unlink needs it, and gives writers waiting for free
 * slots what they wait for, spilling files unlinked while open when nothing else can make
 * room ({@link Spill}). {@link WritebackBackoff} counts, logs and backs off its failures.
 * Fields marked "guarded by index" are guarded by the engine's index monitor ({@link
 * SlotTable}).
 */
final class Writeback implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Writeback.class);
  /** Writeback batches hold this many writeback_jobs buffers' worth of blocks per fsync. */
  private static final int WRITEBACK_BATCH_JOBS = 16;

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final CacheConfig config;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final BackingSyncs backingSyncs;
  private final Counters.Writeback counters;
  private final BackingCopier copier;
  private final Thread thread;
  /** Guarded by index: flushes and unmounts waiting for the cache to drain. */
  private int drainRequests;
  /** Guarded by index: writeback's watermark hysteresis (see WritebackPolicy). */
  private boolean writebackActive;
  /** Guarded by index: the engine is stopping; writeback ends once everything is written. */
  private boolean closing;
  /** Blocks in the current writeback batch, for status; written under index. */
  private volatile int writebackInFlight;
  /** Set once, before start: records are applied before the data that follows them. */
  private Journal journal;
  /** Guarded by index: the next round applies journal records instead of copying data. */
  private boolean applyJournal;
  /** Guarded by index: the next round spills this file instead of copying data. */
  private CachedFile spillNext;
  /** Moves files unlinked while open out of a cache they fill. */
  private final Spill spill;
  /** The writeback thread's failures: counted, logged once, retried with backoff. */
  private final WritebackBackoff backoff;

  Writeback(CacheMemory mem, CacheLayout layout, BackingStore backing, CacheConfig config,
      SlotTable table, FileRegistry files, Epochs epochs, BackingSyncs backingSyncs,
      Counters.Writeback counters, Counters.Recovery recoveryCounters) {
    this.mem = mem;
    this.layout = layout;
    this.backing = backing;
    this.config = config;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.backingSyncs = backingSyncs;
    this.counters = counters;
    this.copier = new BackingCopier(mem, layout, files,
        new LostAndFound(backing, table, files, recoveryCounters), config.writebackJobs(),
        this::drainRequested);
    this.backoff = new WritebackBackoff(table, counters);
    this.spill = new Spill(mem, layout, backing, table, epochs, counters,
        f -> freeWrittenBack(f, new long[0], new int[0]));
    this.thread = new Thread(this::writebackLoop, "wcfs-writeback");
    this.thread.setDaemon(true);
  }

  void start() {
    thread.start();
  }

  /** See {@link Spill#removeStrays}. */
  void removeStraySpills() {
    spill.removeStrays();
  }

  void wire(Journal journal) {
    this.journal = journal;
  }

  /** Whether the writeback thread runs (else tests drive it: manual mode). */
  boolean running() {
    return thread.isAlive() && !closing;
  }

  int inFlight() {
    return writebackInFlight;
  }

  /** Ends the thread once everything is written back (or at once after an error). */
  void stop(long timeoutMs) {
    synchronized (table) {
      closing = true;
      table.notifyAll();
    }
    try {
      thread.join(timeoutMs);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    copier.close();
  }

  /**
   * A writer found too few free slots: commit (the cache may be full of uncommitted blocks
   * writeback cannot take), then wait up to 200 ms for writeback to free some.
   */
  void waitForFreeSlots(int need) throws IOException {
    counters.writesBlocked.increment();
    // The cache may be full of uncommitted blocks that writeback cannot take: commit them.
    epochs.commit();
    try {
      epochs.settleFrees(); // the last commit's frees wait for the next one; this writer cannot
    } catch (IOException | RuntimeException e) {
      throw epochs.fail(e);
    }
    if (!thread.isAlive()) {
      // manual mode: nobody else will make room
      if (step() == 0) {
        journal.apply(true); // records naming a dead file keep it from spilling
        CachedFile dead;
        synchronized (table) {
          dead = files.largestSpillable();
        }
        if (dead != null) {
          spill.spill(dead);
        }
      }
      return;
    }
    synchronized (table) {
      table.writerWaits();
      table.notifyAll();
      try {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(200);
        while (table.free() < need && epochs.error() == null && !closing) {
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            break; // re-check under the caller's locks; the file may need fewer slots now
          }
          table.wait(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)));
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while waiting for free cache blocks");
      } finally {
        table.writerDone();
      }
    }
    epochs.checkError();
  }

  /** Writes one file back completely and releases its file slot. Holds f.lock throughout. */
  void writeBackFile(CachedFile f) throws IOException {
    f.lock.writeLock().lock();
    try {
      if (f.fileSlot < 0) {
        return;
      }
      epochs.commit(); // every block of f is committed from here on: we hold its lock
      long[] keys = f.blocks.keysSorted();
      int[] slots = new int[keys.length];
      for (int i = 0; i < keys.length; i++) {
        slots[i] = f.blocks.get(keys[i]);
      }
      copyToBacking(f, keys, slots, f.size, f.mtimeNanos);
      freeWrittenBack(f, keys, slots);
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /**
   * Writes blocks to the backing file and fsyncs it with the file's size and mtime as of when
   * the blocks were taken ({@link BackingCopier#copyToBacking}). Takes f.io.
   */
  void copyToBacking(CachedFile f, long[] blockIdx, int[] slots, long size, long mtime)
      throws IOException {
    copier.copyToBacking(f, blockIdx, slots, size, mtime);
  }

  /** Whether a flush, unmount or close waits for the cache to drain (the copier asks). */
  private boolean drainRequested() {
    synchronized (table) {
      return drainRequests > 0 || closing;
    }
  }

  /**
   * Frees slots whose data is now durable in the backing file: seq = -1 durably, then the file
   * slot if the file has nothing left. Needs f.lock exclusively.
   */
  void freeWrittenBack(CachedFile f, long[] blockIdx, int[] slots) throws IOException {
    IntList freed = new IntList();
    for (int i = 0; i < slots.length; i++) {
      int s = slots[i];
      if (f.blocks.get(blockIdx[i]) == s && table.isCommitted(s)) {
        freed.add(s);
      }
    }
    // The older versions these replaced were put among the unsettled frees before these
    // became committed: durable first, or a crash could keep a free below without the older
    // version's and bring that version back (SupersededFreeCrashTest).
    epochs.settleFrees();
    for (int i = 0; i < freed.size(); i++) {
      layout.storeEntryFree(freed.get(i));
      layout.flushEntry(freed.get(i));
    }
    epochs.commitMemory();
    boolean releaseFile;
    synchronized (table) {
      for (int i = 0; i < freed.size(); i++) {
        int s = freed.get(i);
        f.blocks.remove(CacheLayout.locationBlock(layout.entryLocation(s)));
        table.writtenBack(s);
      }
      counters.writtenBack.add(freed.size());
      releaseFile = f.blocks.size() == 0 && f.fileSlot >= 0 && f.versionSeq < epochs.committedSeq()
          && f.pendingRecords == 0; // records name the file by its slot: it stays theirs
    }
    if (releaseFile) {
      int fs = f.fileSlot;
      epochs.storeFileSlotFree(fs);
      mem.commit();
      synchronized (table) {
        f.fileSlot = -1;
        f.versionSeq = CacheLayout.FREE;
        files.slotFreed(fs);
        files.forgetIfUnused(f);
      }
    }
    synchronized (table) {
      table.notifyAll();
    }
  }

  /**
   * Releases the slot of a file whose journal records are all applied, once nothing else
   * keeps it: no blocks (a dead file's were dropped) and its version committed.
   */
  void releaseIfDone(CachedFile f) throws IOException {
    f.lock.writeLock().lock();
    try {
      if (f.dead) {
        synchronized (table) {
          if (f.pendingRecords > 0 || f.fileSlot < 0 || f.blocks.size() > 0) {
            return;
          }
        }
        epochs.commit(); // the dead mark and the drops before the slot goes
      }
      freeWrittenBack(f, new long[0], new int[0]);
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  private void writebackLoop() {
    while (true) {
      try {
        List<CachedFile> groupFiles = new ArrayList<>();
        List<int[]> groupSlots = new ArrayList<>();
        if (!nextBatch(groupFiles, groupSlots)) {
          return;
        }
        boolean applyNow;
        CachedFile dead;
        synchronized (table) {
          applyNow = applyJournal;
          applyJournal = false;
          dead = spillNext;
          spillNext = null;
        }
        if (dead != null) {
          spill.spill(dead);
          continue;
        }
        if (applyNow) {
          try {
            journal.apply(false);
            backoff.journalApplied();
          } catch (IOException | RuntimeException e) {
            backoff.journalFailed(e);
          }
          continue;
        }
        writeBackBatch(groupFiles, groupSlots);
        backoff.batchDone(!groupFiles.isEmpty());
      } catch (IOException | RuntimeException e) {
        backoff.batchFailed(e);
      } catch (Error e) {
        LOG.error("writeback thread died", e);
        throw e;
      }
    }
  }

  private void writeBackBatch(List<CachedFile> groupFiles, List<int[]> groupSlots)
      throws IOException {
    try {
      // Hook (issue 14): may this cache write back now? A claimed backing directory on a
      // shared filesystem says no once its lease lapsed or another machine took it over.
      // Throwing fails the batch like a backing I/O error: blocks stay cached, retried later.
      if (!groupFiles.isEmpty()) {
        backing.checkMayWriteBack();
      }
      for (int g = 0; g < groupFiles.size(); g++) {
        writeBackGroup(groupFiles.get(g), groupSlots.get(g));
      }
    } finally {
      synchronized (table) {
        for (int[] slots : groupSlots) {
          for (int s : slots) {
            table.endWriteback(s);
          }
        }
        writebackInFlight = 0;
        table.notifyAll();
      }
    }
  }

  /**
   * One writeback batch of the oldest committed blocks, now, whatever the watermarks; returns
   * the number of blocks taken. Drives writeback in tests that run without the thread.
   */
  int step() throws IOException {
    List<CachedFile> groupFiles = new ArrayList<>();
    List<int[]> groupSlots = new ArrayList<>();
    int taken;
    synchronized (table) {
      collectBatch(groupFiles, groupSlots);
      taken = writebackInFlight;
    }
    try {
      writeBackBatch(groupFiles, groupSlots);
    } catch (IOException | RuntimeException e) {
      counters.failed(e.getMessage());
      throw e;
    }
    return taken;
  }

  /**
   * Waits for work and takes the oldest committed blocks, grouped per file and sorted by block.
   * Returns false when the cache is closing and everything is written back.
   */
  private boolean nextBatch(List<CachedFile> groupFiles, List<int[]> groupSlots)
      throws IOException {
    boolean needCommit = false;
    synchronized (table) {
      while (true) {
        long now = System.nanoTime();
        boolean draining = drainRequests > 0 || config.cleaner() || closing;
        WritebackPolicy.Decision d = WritebackPolicy.decide(new WritebackPolicy.State(
            table.usedPercentAbove(config.highWatermark()),
            table.usedPercentBelow(config.lowWatermark()), writebackActive, draining,
            table.writersWaiting() > 0, TimeUnit.NANOSECONDS.toMillis(epochs.oldestDirtyAgeNanos(now)),
            backoff.writebackBackingOff(now), epochs.error() != null), config);
        writebackActive = d.active();
        boolean want = d.write();
        long autocommitIn = epochs.autocommitInNanos(now);
        boolean autocommitDue = autocommitIn == 0;
        epochs.writebackWaits(want);
        // Records first: data of files they name waits for them (see collectBatch).
        if (!backoff.journalBackingOff(now) && epochs.error() == null
            && (journal.due(now, config.maxAgeMs(), draining || table.writersWaiting() > 0)
                || (want && journal.hasCommitted()))) {
          applyJournal = true;
          return true;
        }
        if (draining && journal.pendingCount() > 0 && !journal.hasCommitted()) {
          needCommit = true; // records wait for a commit before they can be applied
          break;
        }
        if (want) {
          collectBatch(groupFiles, groupSlots);
          if (!groupFiles.isEmpty()) {
            return true;
          }
          if (epochs.uncommittedCount() > 0 && (draining || table.writersWaiting() > 0)) {
            needCommit = true;
            break;
          }
          // Writers wait for room writeback cannot make: what holds it may be files unlinked
          // while open, whose blocks writeback never takes.
          if (table.writersWaiting() > 0) {
            spillNext = files.largestSpillable();
            if (spillNext != null) {
              return true;
            }
          }
          if (table.dirty() == 0 && closing && journal.pendingCount() == 0) {
            return false;
          }
        } else if (closing && (epochs.error() != null
            || (table.dirty() == 0 && journal.pendingCount() == 0))) {
          return false;
        }
        if (autocommitDue) {
          needCommit = true;
          break;
        }
        long waitMs = 100;
        if (autocommitIn > 0) {
          waitMs = Math.max(1, Math.min(waitMs, TimeUnit.NANOSECONDS.toMillis(autocommitIn)));
        }
        try {
          table.wait(waitMs);
        } catch (InterruptedException e) {
          return false;
        }
      }
    }
    if (needCommit) {
      epochs.commit();
    }
    return true;
  }

  /**
   * Needs index. Takes up to {@code WRITEBACK_BATCH_JOBS} x writeback_jobs committed slots from
   * the LRU head. Memory in flight stays bounded by writeback_jobs blocks (the copy buffer is
   * reused run after run); the larger batch spreads one fsync per file over more data: with
   * one fsync per 4 MiB, draining 1 GiB ran at 0.2x a plain sequential write on this machine.
   */
  private void collectBatch(List<CachedFile> groupFiles, List<int[]> groupSlots)
      throws IOException {
    Map<CachedFile, IntList> byFile = new HashMap<>();
    int taken = 0;
    int limit = config.writebackJobs() * WRITEBACK_BATCH_JOBS;
    for (int s = table.oldest(); s >= 0 && taken < limit; s = table.newerThan(s)) {
      if (!table.isCommitted(s)) {
        break; // allocation order = epoch order: everything after is uncommitted too
      }
      if (table.inWriteback(s)) {
        continue;
      }
      CachedFile f = files.bySlot(CacheLayout.locationFileSlot(layout.entryLocation(s)));
      if (f.pendingRecords > 0) {
        // Named by records not applied yet: its data follows them (a created file has no
        // backing file before its CREATE; a renamed one is written back when its RENAME is).
        continue;
      }
      if (f.dead) {
        continue; // unlinked while open: its blocks never reach the backing directory
      }
      table.startWriteback(s);
      byFile.computeIfAbsent(f, k -> new IntList()).add(s);
      taken++;
    }
    writebackInFlight = taken;
    for (Map.Entry<CachedFile, IntList> e : byFile.entrySet()) {
      IntList l = e.getValue();
      int[] slots = new int[l.size()];
      for (int i = 0; i < slots.length; i++) {
        slots[i] = l.get(i);
      }
      groupFiles.add(e.getKey());
      groupSlots.add(slots);
    }
  }

  /**
   * One file's share of a batch: copy under the file's read lock (a truncate cannot slip
   * between our size check and the write), fsync without it ({@link BackingCopier#copyGroup}),
   * free under its write lock.
   */
  private void writeBackGroup(CachedFile f, int[] slots) throws IOException {
    BackingCopier.Written written = copier.copyGroup(f, slots);
    if (written == null) {
      return;
    }
    f.lock.writeLock().lock();
    try {
      freeWrittenBack(f, written.blockIdx(), written.slots());
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /**
   * Commits, then writes everything back and waits until the cache is empty (wcfs flush,
   * unmount). Throws if writeback keeps failing past {@code timeoutMs}, leaving data cached.
   */
  void flush(long timeoutMs) throws IOException {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
    synchronized (table) {
      drainRequests++;
      table.notifyAll();
    }
    try {
      while (true) {
        epochs.commit();
        if (!thread.isAlive() && !closing) {
          journal.apply(true);
          step(); // manual mode
        }
        synchronized (table) {
          if (table.dirty() == files.blocksOfDeadFiles() && epochs.uncommittedCount() == 0
              && !backingSyncs.owesBackingSyncs() && journal.pendingCount() == 0) {
            return;
          }
          epochs.checkError();
          if (System.nanoTime() > deadline) {
            throw new IOException("writeback did not finish in " + timeoutMs + " ms: "
                + table.dirty() + " blocks still dirty and kept in the cache"
                + (counters.lastError() == null ? ""
                    : "; last error: " + counters.lastError()));
          }
          table.wait(50);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while flushing");
    } finally {
      synchronized (table) {
        drainRequests--;
      }
    }
  }

  /** {@link LostAndFound#path}, by the name Recovery calls it. */
  static String lostAndFoundPath(String path, int fileSlot, long seq) {
    return LostAndFound.path(path, fileSlot, seq);
  }
}
