package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * The namespace journal (docs/design.md, "Namespace journal"): a ring of
 * records in the cache, committed by the same seq_count store as data, and applied to the
 * backing directory later, in order, by writeback through {@link JournalApplier}. This class
 * owns the ring: appending, waiting for room, what is due, and the records' retirement.
 *
 * <p>The ring's fields are guarded by the index monitor ({@code table}); appends are
 * serialized by the namespace lock; applying by the applier's lock.
 */
final class Journal {
  /** Records per batch at most: bounds the work a crash may have to redo. */
  private static final int MAX_BATCH = 256;

  /** A record not yet applied and freed. */
  static final class Rec {
    final int index;
    final long epoch;
    final long order;
    final CacheLayout.Op op;
    /** The file it names: a CREATE's new file, a RENAME's moving file; may be null. */
    final CachedFile file;
    final String path1;
    final String path2;
    /** The file whose last name it removes, if it has a slot (named in the record too). */
    final CachedFile victim;
    /**
     * Applying it began before (a batch that failed, or a crash before recovery): part of its
     * effect may be in the backing directory already. Guarded by the applier's lock.
     */
    boolean attempted;
    final long nanos = System.nanoTime();

    Rec(int index, long epoch, long order, CacheLayout.Op op, CachedFile file, String path1,
        String path2, CachedFile victim) {
      this.index = index;
      this.epoch = epoch;
      this.order = order;
      this.op = op;
      this.file = file;
      this.path1 = path1;
      this.path2 = path2;
      this.victim = victim;
    }
  }

  private final CacheLayout layout;
  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Overlay overlay;
  private final Counters.Journal counters;
  private final int capacity;
  /** Set after construction: the applier needs writeback, which is built after this. */
  private JournalApplier applier;

  /** Guarded by table: the records not yet freed, oldest first (ring order). */
  private final ArrayDeque<Rec> pending = new ArrayDeque<>();
  /**
   * Guarded by table: the ring's oldest pending record, and where the next one goes. The
   * pending records lie in ring order between them; a power loss while a batch's frees were
   * stored may have kept a later free without an earlier one, so there may be free holes
   * between them after recovery, which are reused only once head passes them.
   */
  private int head;
  private int tail;
  /** Guarded by table: ring slots from head to tail, holes included. */
  private int span;
  /** Guarded by table: the last order handed out. */
  private long lastOrder;
  /** Guarded by table: a namespace operation waits for room. */
  private int waitingForRoom;
  /** Number of records not yet freed; read without the monitor for fast paths. */
  private volatile int pendingCount;

  Journal(CacheLayout layout, BackingStore backing, SlotTable table, FileRegistry files,
      Epochs epochs, Overlay overlay, Counters.Journal counters) {
    this.layout = layout;
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.overlay = overlay;
    this.counters = counters;
    this.capacity = layout.geometry().journalRecords();
  }

  void wire(JournalApplier applier) {
    this.applier = applier;
  }

  /** Recovery, once the records are pending: see {@link JournalApplier#recovered}. */
  void applyRecovered() throws IOException {
    applier.recovered();
  }

  /** See {@link JournalApplier#apply}. */
  int apply(boolean all) throws IOException {
    return applier.apply(all);
  }

  int capacity() {
    return capacity;
  }

  int pendingCount() {
    return pendingCount;
  }

  // ---- appending ---------------------------------------------------------------------------

  /** Needs index. Whether {@code n} more records fit. */
  boolean hasRoom(int n) {
    return span + n <= capacity;
  }

  /**
   * Waits, holding no lock, until {@code n} records fit: a full journal makes namespace
   * operations wait for writeback to apply records, as a full cache makes writers wait.
   */
  void awaitRoom(int n) throws IOException {
    while (true) {
      boolean manual;
      synchronized (table) {
        if (hasRoom(n)) {
          return;
        }
        manual = !applier.writebackRunning();
        if (!manual) {
          counters.fullWaits.increment();
          waitingForRoom++;
          table.notifyAll();
          try {
            table.wait(100);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while waiting for room in the namespace journal");
          } finally {
            waitingForRoom--;
          }
        }
      }
      epochs.checkError();
      if (manual) {
        apply(true); // no writeback thread (tests): make room ourselves
      }
    }
  }

  /**
   * Appends a record to the open epoch. Caller holds the namespace lock exclusively and
   * epochLock shared, and made room ({@link #awaitRoom}); {@code file} has a file slot.
   * Returns its order.
   */
  long append(CacheLayout.Op op, CachedFile file, String path1, String path2,
      CachedFile victim) throws IOException {
    int index;
    long order;
    long epoch = epochs.openEpoch();
    synchronized (table) {
      if (!hasRoom(1)) {
        throw new IllegalStateException("namespace journal full: the caller did not wait");
      }
      index = tail;
      order = ++lastOrder;
    }
    layout.storeRecord(index, epoch, order, op, file == null ? -1 : file.fileSlot, path1, path2,
        victim == null ? -1 : victim.fileSlot);
    synchronized (table) {
      pending.addLast(new Rec(index, epoch, order, op, file, path1, path2, victim));
      tail = (tail + 1) % capacity;
      span++;
      pendingCount = pending.size();
      epochs.recordStored(index);
      if (file != null) {
        file.pendingRecords++;
      }
      if (victim != null && victim != file) {
        victim.pendingRecords++; // its slot is named by the record: kept until it goes
      }
    }
    counters.appended.increment();
    return order;
  }

  // ---- what writeback asks ------------------------------------------------------------------

  /** Needs index. Whether committed records wait to be applied now: pressure or age. */
  boolean due(long now, long maxAgeMs, boolean draining) {
    Rec r = pending.peekFirst();
    if (r == null || r.epoch >= epochs.committedSeq()) {
      return false;
    }
    return draining || waitingForRoom > 0 || pending.size() * 2 > capacity
        || (maxAgeMs > 0 && now - r.nanos > TimeUnit.MILLISECONDS.toNanos(maxAgeMs));
  }

  /** Needs index. Committed records wait (writeback applies them before data it takes). */
  boolean hasCommitted() {
    Rec r = pending.peekFirst();
    return r != null && r.epoch < epochs.committedSeq();
  }

  // ---- retiring ----------------------------------------------------------------------------

  /**
   * Committed records from the oldest on, in order, with no name or file twice, and no
   * renames across directories that leave no order to fsync them in ({@link
   * DirectorySyncs.fsyncOrder}: each one's target directory before its source, which renames crossing
   * the same directories both ways would contradict).
   */
  List<Rec> takeBatch() {
    List<Rec> batch = new ArrayList<>();
    Set<String> names = new HashSet<>();
    Set<CachedFile> filesSeen = new HashSet<>();
    List<String[]> renames = new ArrayList<>();
    synchronized (table) {
      long committed = epochs.committedSeq();
      for (Rec r : pending) {
        if (r.epoch >= committed || batch.size() >= MAX_BATCH) {
          break;
        }
        boolean conflict = names.contains(r.path1) || (r.path2 != null && names.contains(r.path2))
            || (r.file != null && filesSeen.contains(r.file))
            || (r.victim != null && filesSeen.contains(r.victim));
        if (!conflict && r.op == CacheLayout.Op.RENAME) {
          String target = BackingStore.parentOf(r.path2);
          String source = BackingStore.parentOf(r.path1);
          if (!target.equals(source)) {
            conflict = reaches(renames, source, target); // the new order would close a cycle
            renames.add(new String[] {target, source});
          }
        }
        if (conflict) {
          break;
        }
        names.add(r.path1);
        if (r.path2 != null) {
          names.add(r.path2);
        }
        if (r.file != null) {
          filesSeen.add(r.file);
        }
        if (r.victim != null) {
          filesSeen.add(r.victim);
        }
        batch.add(r);
      }
    }
    return batch;
  }

  /** Whether {@code from} must come before {@code to} by the (before, after) pairs given. */
  private static boolean reaches(List<String[]> before, String from, String to) {
    ArrayDeque<String> todo = new ArrayDeque<>(List.of(from));
    Set<String> seen = new HashSet<>(todo);
    while (!todo.isEmpty()) {
      String d = todo.poll();
      if (d.equals(to)) {
        return true;
      }
      for (String[] e : before) {
        if (e[0].equals(d) && seen.add(e[1])) {
          todo.add(e[1]);
        }
      }
    }
    return false;
  }

  /**
   * The batch's records are freed on the device: out of the ring, oldest first. Returns the
   * files no record names any more (their slots may go).
   */
  List<CachedFile> retired(List<Rec> batch) {
    List<CachedFile> release = new ArrayList<>();
    synchronized (table) {
      for (Rec r : batch) {
        Rec first = pending.pollFirst();
        if (first != r) {
          throw new IllegalStateException("journal ring out of order");
        }
        advanceHead();
        if (r.file != null && --r.file.pendingRecords == 0) {
          release.add(r.file);
        }
        if (r.victim != null && r.victim != r.file && --r.victim.pendingRecords == 0) {
          release.add(r.victim);
        }
      }
      pendingCount = pending.size();
      counters.applied.add(batch.size());
      table.notifyAll();
    }
    return release;
  }

  /** Needs index. head moves to the oldest pending record, or to tail when none is left. */
  private void advanceHead() {
    Rec next = pending.peekFirst();
    int newHead = next == null ? tail : next.index;
    span = next == null ? 0 : span - (newHead - head + capacity) % capacity;
    head = newHead;
  }

  /** The records not yet freed, oldest first. */
  List<Rec> pendingSnapshot() {
    synchronized (table) {
      return new ArrayList<>(pending);
    }
  }

  // ---- recovery -----------------------------------------------------------------------------

  /**
   * Recovery: takes the committed records found on the device, in order, as pending (their
   * files already recovered by slot) and frees the rest; {@link JournalApplier#recovered}
   * applies them.
   */
  void recovered(List<CacheLayout.Record> records, IntList uncommitted) throws IOException {
    for (int i = 0; i < uncommitted.size(); i++) {
      layout.storeRecordFree(uncommitted.get(i));
      layout.flushRecord(uncommitted.get(i));
    }
    synchronized (table) {
      for (CacheLayout.Record r : records) {
        CachedFile f = r.fileSlot() >= 0 ? files.bySlot(r.fileSlot()) : null;
        CachedFile v = r.victimSlot() >= 0 ? files.bySlot(r.victimSlot()) : null;
        Rec rec = new Rec(r.index(), r.seq(), r.order(), r.op(), f, r.path1(), r.path2(), v);
        rec.attempted = true; // a crash may have cut its batch
        pending.addLast(rec);
        if (f != null) {
          f.pendingRecords++;
        }
        if (v != null && v != f) {
          v.pendingRecords++;
        }
        lastOrder = Math.max(lastOrder, r.order());
      }
      // Appended in ring order, so the ring resumes after the newest and frees from the
      // oldest; holes between them (frees a power loss kept out of order) wait for head.
      if (records.isEmpty()) {
        head = 0;
        tail = 0;
        span = 0;
      } else {
        head = records.get(0).index();
        tail = (records.get(records.size() - 1).index() + 1) % capacity;
        span = (tail - head + capacity) % capacity;
        if (span == 0) {
          span = capacity;
        }
      }
      pendingCount = pending.size();
    }
  }

}
