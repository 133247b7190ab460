package io.wcfs.core;

import java.io.IOException;

/**
 * The durable-free sequence: how slots and file slots are freed on the device, and when they
 * may be reused. The frees a commit leaves behind ({@link #releaseSlots}), the unsettled ones
 * that the next memory commit makes durable ({@link #commitMemory}, {@link #settleFrees}), and
 * both versions of a file slot, the older one first ({@link #storeFileSlotFree}). A free of a
 * committed item first settles the commit point ({@link Epochs#settleCommitPoint}: a commit
 * record's proof must hold until SeqCount passes its epoch). Part of {@link Epochs}, which
 * makes it and is its callers' way in. Its field is guarded by the engine's index monitor
 * ({@link SlotTable}). It has no lock of its own; settling the commit point takes Epochs'
 * commitLock, so it is never called under index (the order {@link WriteCache} states).
 */
final class DurableFrees {
  private final CacheMemory mem;
  private final CacheLayout layout;
  private final SlotTable table;
  private final FileRegistry files;
  private final CommitPoint commitPoint;

  /**
   * Guarded by index. Slots freed on the device (seq = -1 stored and flushed) after the commit
   * that replaced them, not yet durable: the next memory commit makes them so ({@link
   * #commitMemory}), and only then are they reused. A commit thus frees with the next
   * commit's first device flush instead of one of its own (see {@link #releaseSlots}).
   */
  private IntList freesUnsettled = new IntList();

  /** Makes SeqCount durable up to the committed epochs ({@link Epochs#settleCommitPoint}). */
  @FunctionalInterface
  interface CommitPoint {
    void settle() throws IOException;
  }

  DurableFrees(CacheMemory mem, CacheLayout layout, SlotTable table, FileRegistry files,
      CommitPoint commitPoint) {
    this.mem = mem;
    this.layout = layout;
    this.table = table;
    this.files = files;
    this.commitPoint = commitPoint;
  }

  /**
   * Frees entries (seq = -1), then file slots; a slot is reused only once its free is durable.
   * Old versions of overwritten blocks alone (the common case) are stored and flushed here but
   * made durable by the next memory commit, not by a device flush of their own: until then
   * they stay in {@code freesUnsettled}, not reusable. That is safe because
   * the next commit's first memory commit covers them, before its commit point and before it
   * stores frees of its own, and writeback settles them before it stores any free (an
   * unsettled free may be the older version of a block writeback frees: were the newer free
   * durable alone, a crash would resurrect the older version; SupersededFreeCrashTest). A
   * crash before that finds both versions committed, and recovery keeps the newer one, as
   * after a crash between a commit and its frees before. Dropped blocks ({@code drops}: no
   * newer version stands for them; a free left for later would let a crash after the call
   * returned bring their old data back) and file slots (their entries' frees go first) still
   * commit at once.
   */
  void releaseSlots(IntList frees, IntList fileFrees, boolean drops)
      throws IOException {
    if (frees.isEmpty() && fileFrees.isEmpty()) {
      return;
    }
    for (int i = 0; i < frees.size(); i++) {
      layout.storeEntryFree(frees.get(i));
      layout.flushEntry(frees.get(i));
    }
    if (fileFrees.isEmpty() && !drops) {
      synchronized (table) {
        for (int i = 0; i < frees.size(); i++) {
          freesUnsettled.add(frees.get(i));
        }
      }
      return;
    }
    mem.commit();
    if (!fileFrees.isEmpty()) {
      for (int i = 0; i < fileFrees.size(); i++) {
        storeFileSlotFree(fileFrees.get(i));
      }
      mem.commit();
    }
    synchronized (table) {
      for (int i = 0; i < frees.size(); i++) {
        table.freed(frees.get(i));
      }
      for (int i = 0; i < fileFrees.size(); i++) {
        files.slotFreed(fileFrees.get(i));
      }
      if (table.writersWaiting() > 0) {
        // Only writers waiting for free slots care. Waking the writeback thread too (it waits
        // on the same monitor) cost a context switch per overwriting fsync: 19% of the
        // daemon's CPU with 4 fio jobs.
        table.notifyAll();
      }
    }
  }

  /**
   * pmem_commit; then the unsettled frees flushed before it began are durable and their slots
   * may be reused. They are taken before the commit begins, so that it covers their flush.
   */
  void commitMemory() throws IOException {
    IntList settling = null;
    synchronized (table) {
      if (!freesUnsettled.isEmpty()) {
        settling = freesUnsettled;
        freesUnsettled = new IntList();
      }
    }
    try {
      mem.commit();
    } catch (IOException | RuntimeException e) {
      if (settling != null) {
        synchronized (table) {
          for (int i = 0; i < settling.size(); i++) {
            freesUnsettled.add(settling.get(i));
          }
        }
      }
      throw e;
    }
    if (settling == null) {
      return;
    }
    synchronized (table) {
      for (int i = 0; i < settling.size(); i++) {
        table.freed(settling.get(i));
      }
      if (table.writersWaiting() > 0) {
        table.notifyAll();
      }
    }
  }

  /**
   * Makes the frees the last commit left for the next one durable now, if there are any: for
   * a writer waiting for slots, and for writeback before it stores frees of its own.
   */
  void settleFrees() throws IOException {
    commitPoint.settle();
    boolean unsettled;
    synchronized (table) {
      unsettled = !freesUnsettled.isEmpty();
    }
    if (unsettled) {
      commitMemory();
    }
  }

  /**
   * Frees both versions of a file slot, the older one durably first: were the newer one freed
   * alone, a crash would let the older version (stale size and path) win recovery.
   */
  void storeFileSlotFree(int fileSlot) throws IOException {
    // A version the last commit record lists may be among the two (a version stored after
    // writeback took the file's blocks, committed by a record since): SeqCount first.
    commitPoint.settle();
    long seq0 = layout.readFileVersion(fileSlot, 0).seq();
    long seq1 = layout.readFileVersion(fileSlot, 1).seq();
    int older = Long.compareUnsigned(seq0 + 1, seq1 + 1) < 0 ? 0 : 1; // FREE (-1) sorts first
    layout.storeFileVersionFree(fileSlot, older);
    layout.flushFileVersion(fileSlot, older);
    mem.commit();
    layout.storeFileVersionFree(fileSlot, 1 - older);
    layout.flushFileVersion(fileSlot, 1 - older);
  }
}
