package io.wcfs.core;

/**
 * The in-memory state of every cache slot, with its legal transitions named:
 *
 * <pre>
 *   FREE --reserve--> RESERVED --stored--> UNCOMMITTED --sealed--> COMMITTING --committed--> COMMITTED
 *                                              |                          |                       |
 *                                              +------- supersede --------+-----------------------+--> SUPERSEDED
 *   COMMITTED --writtenBack--> (freed)      SUPERSEDED --freed--> (freed)
 *   (freed) = FREE, or FREED_AFTER_WB while writeback still reads the slot
 * </pre>
 *
 * Orthogonal to the kind, the writeback bit marks a slot whose data writeback is copying: it
 * is not reused until {@link #endWriteback} (the kernel reads it straight from the mapping).
 * Occupied slots (uncommitted and committed) are kept in allocation order, which is epoch
 * order: writeback takes the oldest from the head. Free slots chain through the same array.
 *
 * <p>The table is the engine's index monitor: every method needs the caller to hold {@code
 * synchronized (this)}, as do the other index fields of the engine (see {@link WriteCache}).
 * Only the state is here; the persistent side of each transition is the caller's.
 */
final class SlotTable {
  private static final byte FREE = 0;
  private static final byte RESERVED = 1;
  private static final byte UNCOMMITTED = 2;
  private static final byte COMMITTED = 3;
  /** Replaced by a newer version or dropped; freed after the open epoch commits. */
  private static final byte SUPERSEDED = 4;
  /** Freed on the device, waiting for writeback to stop reading it before reuse. */
  private static final byte FREED_AFTER_WB = 5;
  /**
   * Stored in an epoch whose commit is running: no longer written in place (a write copies it
   * to a new slot of the open epoch), not yet written back.
   */
  private static final byte COMMITTING = 6;
  private static final byte KIND = 0x0f;
  private static final byte WB = 0x10;

  private final int size;
  private final byte[] state;
  /** Occupied slots in allocation order (oldest first); free slots chain through next. */
  private final int[] prev;
  private final int[] next;
  private int head = -1;
  private int tail = -1;
  private int freeHead = -1;
  private int freeCount;
  /** Occupied slots: uncommitted or committed, not yet written back. */
  private int dirtyCount;
  /** Writers waiting for free slots (they wait on this monitor). */
  private int waitingWriters;

  SlotTable(int size) {
    this.size = size;
    this.state = new byte[size];
    this.prev = new int[size];
    this.next = new int[size];
  }

  int size() {
    return size;
  }

  int free() {
    return freeCount;
  }

  int dirty() {
    return dirtyCount;
  }

  int writersWaiting() {
    return waitingWriters;
  }

  void writerWaits() {
    waitingWriters++;
  }

  void writerDone() {
    waitingWriters--;
  }

  boolean isUncommitted(int s) {
    return (state[s] & KIND) == UNCOMMITTED;
  }

  boolean isCommitted(int s) {
    return (state[s] & KIND) == COMMITTED;
  }

  boolean inWriteback(int s) {
    return (state[s] & WB) != 0;
  }

  /** More than {@code pct} percent of the slots are in use. */
  boolean usedPercentAbove(int pct) {
    return (long) (size - freeCount) * 100 > (long) pct * size;
  }

  /** Less than {@code pct} percent of the slots are in use. */
  boolean usedPercentBelow(int pct) {
    return (long) (size - freeCount) * 100 < (long) pct * size;
  }

  /** The oldest occupied slot, or -1. */
  int oldest() {
    return head;
  }

  /** The occupied slot allocated after {@code s}, or -1. */
  int newerThan(int s) {
    return next[s];
  }

  /** FREE -> RESERVED: taken for a write that has not stored it yet. */
  int reserve() {
    int s = freeHead;
    freeHead = next[s];
    freeCount--;
    state[s] = RESERVED;
    return s;
  }

  /** RESERVED -> UNCOMMITTED: data and entry stored in the open epoch. */
  void stored(int s) {
    state[s] = UNCOMMITTED;
    append(s);
    dirtyCount++;
  }

  /** UNCOMMITTED -> COMMITTING: its epoch is sealed and being committed. */
  void sealed(int s) {
    if ((state[s] & KIND) == UNCOMMITTED) {
      state[s] = (byte) ((state[s] & WB) | COMMITTING);
    }
  }

  /** COMMITTING -> COMMITTED, after the commit point (a superseded slot stays so). */
  void committed(int s) {
    if ((state[s] & KIND) == COMMITTING) {
      state[s] = (byte) ((state[s] & WB) | COMMITTED);
    }
  }

  /** -> SUPERSEDED: a newer version replaced it, or its block was dropped. */
  void supersede(int s) {
    state[s] = (byte) ((state[s] & WB) | SUPERSEDED);
    remove(s);
    dirtyCount--;
  }

  /** A superseded slot whose entry is now free on the device. */
  void freed(int s) {
    if ((state[s] & WB) != 0) {
      state[s] = (byte) (WB | FREED_AFTER_WB);
    } else {
      pushFree(s);
    }
  }

  /** COMMITTED -> freed: its data is durable in the backing file and its entry free. */
  void writtenBack(int s) {
    remove(s);
    dirtyCount--;
    freed(s);
  }

  /** Writeback starts copying a committed slot. */
  void startWriteback(int s) {
    state[s] |= WB;
  }

  /** Writeback stopped reading the slot: a slot freed meanwhile becomes reusable. */
  void endWriteback(int s) {
    if ((state[s] & WB) == 0) {
      return;
    }
    if ((state[s] & KIND) == FREED_AFTER_WB) {
      pushFree(s);
    } else {
      state[s] &= ~WB;
    }
  }

  // ---- recovery: the table is rebuilt from the device, then the free list from what is left

  /** Recovery found a committed entry in {@code s}; called oldest first. */
  void recovered(int s) {
    state[s] = COMMITTED;
    append(s);
    dirtyCount++;
  }

  /** Recovery's last step: every slot not committed is free. */
  void recoveredFreeList() {
    for (int s = size - 1; s >= 0; s--) {
      if (state[s] == FREE) {
        pushFree(s);
      }
    }
  }

  long heapBytes() {
    return state.length + 4L * prev.length + 4L * next.length;
  }

  private void pushFree(int s) {
    state[s] = FREE;
    next[s] = freeHead;
    freeHead = s;
    freeCount++;
  }

  private void append(int s) {
    prev[s] = tail;
    next[s] = -1;
    if (tail >= 0) {
      next[tail] = s;
    } else {
      head = s;
    }
    tail = s;
  }

  private void remove(int s) {
    int p = prev[s];
    int n = next[s];
    if (p >= 0) {
      next[p] = n;
    } else {
      head = n;
    }
    if (n >= 0) {
      prev[n] = p;
    } else {
      tail = p;
    }
    prev[s] = -1;
    next[s] = -1;
  }
}
