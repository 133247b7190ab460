package io.wcfs.core;

import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The namespace journal (DESIGN.md, "Namespace operations: journaled in the cache"): a ring of
 * records in the cache, committed by the same seq_count store as data, and applied to the
 * backing directory later, in order, by writeback.
 *
 * <p>Applying goes in batches. A batch holds committed records in order, no two of which
 * touch the same name or the same file, so that re-applying a batch cut by a crash is
 * idempotent without guessing: create without truncating (an existing name is this record's
 * file, created before the crash), unlink with ENOENT done, rename with the source gone and
 * the target there done. Per batch, in this order:
 * <ol>
 *   <li>each record's effect in the backing directory; a file renamed is first written back
 *       and fsync'd under its old name, so it shows up at its new name with its data (an
 *       atomic save stays atomic in the backing directory);
 *   <li>fsync of the new files and of every directory touched;
 *   <li>the files' new places (path, no longer absent) in their file slots, committed;
 *   <li>the records freed, durably; then the overlay forgets the names.
 * </ol>
 * A file created and unlinked before its CREATE was applied (both records committed) never
 * reaches the backing directory: its records are skipped ({@code creates_elided}).
 *
 * <p>The ring's fields are guarded by the index monitor ({@code table}); appends are
 * serialized by the namespace lock; applying by {@code applyLock}.
 */
final class Journal {
  private static final Logger LOG = LoggerFactory.getLogger(Journal.class);
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
    final long nanos = System.nanoTime();

    Rec(int index, long epoch, long order, CacheLayout.Op op, CachedFile file, String path1,
        String path2) {
      this.index = index;
      this.epoch = epoch;
      this.order = order;
      this.op = op;
      this.file = file;
      this.path1 = path1;
      this.path2 = path2;
    }
  }

  private final CacheLayout layout;
  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Overlay overlay;
  private final Counters counters;
  private final int capacity;
  /** Set after construction (writeback and the data path are built after the journal). */
  private Writeback writeback;
  private DataPath data;

  /** Guarded by table: the records not yet freed, oldest first (ring order). */
  private final ArrayDeque<Rec> pending = new ArrayDeque<>();
  /** Guarded by table: where the oldest pending record is, or the next one goes. */
  private int head;
  /** Guarded by table: the last order handed out. */
  private long lastOrder;
  /** Guarded by table: a namespace operation waits for room. */
  private int waitingForRoom;
  /** Serializes applying (writeback thread, settle, recovery). */
  private final ReentrantLock applyLock = new ReentrantLock();
  /** Number of records not yet freed; read without the monitor for fast paths. */
  private volatile int pendingCount;

  Journal(CacheLayout layout, BackingStore backing, SlotTable table, FileRegistry files,
      Epochs epochs, Overlay overlay, Counters counters) {
    this.layout = layout;
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.overlay = overlay;
    this.counters = counters;
    this.capacity = layout.geometry().journalRecords();
  }

  void wire(Writeback writeback, DataPath data) {
    this.writeback = writeback;
    this.data = data;
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
    return pending.size() + n <= capacity;
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
        manual = !writeback.running();
        if (!manual) {
          counters.journalFullWaits.increment();
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
  long append(CacheLayout.Op op, CachedFile file, String path1, String path2)
      throws IOException {
    int index;
    long order;
    long epoch = epochs.openEpoch();
    synchronized (table) {
      if (!hasRoom(1)) {
        throw new IllegalStateException("namespace journal full: the caller did not wait");
      }
      index = (head + pending.size()) % capacity;
      order = ++lastOrder;
    }
    layout.storeRecord(index, epoch, order, op, file == null ? -1 : file.fileSlot, path1, path2);
    synchronized (table) {
      pending.addLast(new Rec(index, epoch, order, op, file, path1, path2));
      pendingCount = pending.size();
      epochs.recordStored(index);
      if (file != null) {
        file.pendingRecords++;
      }
    }
    counters.journalRecords.increment();
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

  // ---- applying -----------------------------------------------------------------------------

  /**
   * Applies committed records to the backing directory, batch by batch, until none is left;
   * with {@code all}, first commits so that every record appended so far counts. Returns the
   * number of records applied or skipped.
   */
  int apply(boolean all) throws IOException {
    if (all && pendingCount > 0) {
      epochs.commit();
    }
    applyLock.lock();
    try {
      int done = 0;
      while (true) {
        List<Rec> batch = takeBatch();
        if (batch.isEmpty()) {
          return done;
        }
        applyBatch(batch);
        done += batch.size();
      }
    } finally {
      applyLock.unlock();
    }
  }

  /** Committed records from the oldest on, in order, with no name or file twice. */
  private List<Rec> takeBatch() {
    List<Rec> batch = new ArrayList<>();
    Set<String> names = new HashSet<>();
    Set<CachedFile> filesSeen = new HashSet<>();
    synchronized (table) {
      long committed = epochs.committedSeq();
      for (Rec r : pending) {
        if (r.epoch >= committed || batch.size() >= MAX_BATCH) {
          break;
        }
        boolean conflict = names.contains(r.path1) || (r.path2 != null && names.contains(r.path2))
            || (r.file != null && filesSeen.contains(r.file));
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
        batch.add(r);
      }
    }
    return batch;
  }

  /** A file that never reached the backing directory and whose every name is gone, for sure. */
  private boolean elided(CachedFile f) {
    return f != null && f.absent && f.dead && f.deathEpoch < epochs.committedSeq();
  }

  private void applyBatch(List<Rec> batch) throws IOException {
    backing.checkMayWriteBack();
    Set<String> dirs = new LinkedHashSet<>();
    List<CachedFile> created = new ArrayList<>();
    List<BackingStore.BackingFile> createdFiles = new ArrayList<>();
    List<Rec> moved = new ArrayList<>();
    try {
      // 1. Effects, in order.
      for (Rec r : batch) {
        CachedFile f = r.file;
        LOG.debug("apply {} {} {} slot {} elided {}", r.op, r.path1, r.path2,
            f == null ? -1 : f.fileSlot, elided(f));
        switch (r.op) {
          case CREATE -> {
            if (elided(f)) {
              counters.createsElided.increment();
              continue;
            }
            BackingStore.BackingFile bf;
            try {
              bf = backing.create(r.path1, f.mode, f.uid, f.gid);
            } catch (FileAlreadyExistsException e) {
              bf = backing.open(r.path1); // created before a crash: this record's file
            }
            created.add(f);
            createdFiles.add(bf);
            dirs.add(parentOf(r.path1));
          }
          case UNLINK -> {
            if (elided(f)) {
              continue;
            }
            unlinkIfThere(r.path1);
            dirs.add(parentOf(r.path1));
          }
          case RENAME -> {
            if (elided(f)) {
              unlinkIfThere(r.path2); // what the rename replaced goes all the same
              dirs.add(parentOf(r.path2));
              continue;
            }
            if (f != null && !f.dead) {
              writeback.writeBackFile(f); // its data there, fsync'd, before its new name
            }
            forgetShownIno(r.path2);
            try {
              backing.rename(r.path1, r.path2);
            } catch (IOException e) {
              if (!isNoEntry(e) || backing.stat(r.path2) == null) {
                throw e;
              }
              // Applied before a crash: the source is gone, the target holds it.
            }
            dirs.add(parentOf(r.path1));
            dirs.add(parentOf(r.path2));
            if (f != null) {
              // Where getattr finds it from now on; its slot says so after the fsyncs (a
              // crash before that re-applies the record, which finds it done).
              f.path = r.path2;
              moved.add(r);
            }
          }
        }
      }
      // 2. Durable: new files (their mode and owner), then every directory touched.
      for (BackingStore.BackingFile bf : createdFiles) {
        bf.sync();
      }
      for (String d : dirs) {
        if (backing.stat(d) != null) {
          backing.syncDirectory(d);
        }
      }
      // 3. Where the files are now, in their slots, committed before the records go.
      boolean stored = false;
      for (int i = 0; i < created.size(); i++) {
        CachedFile f = created.get(i);
        String path = null;
        for (Rec r : batch) {
          if (r.file == f && r.op == CacheLayout.Op.CREATE) {
            path = r.path1;
          }
        }
        BackingStore.Stat st = backing.stat(path);
        if (st == null) {
          throw new NoSuchFileException(path + " vanished right after wcfs created it");
        }
        BackingStore.BackingFile bf = createdFiles.get(i);
        createdFiles.set(i, null);
        stored |= placed(f, path, st, bf);
      }
      for (Rec r : moved) {
        stored |= placed(r.file, r.path2, null, null);
      }
      if (stored) {
        epochs.commit();
      }
      // The created files' data, now that they have a place (their blocks were waiting).
      for (CachedFile f : created) {
        if (!f.dead) {
          writeback.writeBackFile(f);
        }
      }
    } finally {
      for (BackingStore.BackingFile bf : createdFiles) {
        if (bf != null) {
          bf.close();
        }
      }
    }
    // 4. The records go, durably; then the overlay forgets what they set.
    for (Rec r : batch) {
      layout.storeRecordFree(r.index);
      layout.flushRecord(r.index);
    }
    epochs.commitMemory();
    List<CachedFile> release = new ArrayList<>();
    synchronized (table) {
      for (Rec r : batch) {
        Rec first = pending.pollFirst();
        if (first != r) {
          throw new IllegalStateException("journal ring out of order");
        }
        head = (head + 1) % capacity;
        if (r.file != null && --r.file.pendingRecords == 0) {
          release.add(r.file);
        }
      }
      pendingCount = pending.size();
      counters.journalApplied.add(batch.size());
      table.notifyAll();
    }
    for (Rec r : batch) {
      overlay.retire(r.path1, r.order);
      if (r.path2 != null) {
        overlay.retire(r.path2, r.order);
      }
    }
    for (CachedFile f : release) {
      writeback.releaseIfDone(f);
    }
  }

  /**
   * Records that {@code f} is at {@code path} in the backing directory now (and, with {@code
   * st}, that it was just created there as {@code bf}). Returns whether its slot was stored.
   */
  private boolean placed(CachedFile f, String path, BackingStore.Stat st,
      BackingStore.BackingFile bf) throws IOException {
    if (st == null && f.dev == FileRegistry.ABSENT_DEV && !f.absent) {
      st = backing.stat(path); // recovered at a path a record had changed: known by it now
    }
    f.lock.writeLock().lock();
    try {
      if (st != null) {
        synchronized (f) {
          if (f.file == null && bf != null) {
            f.file = bf;
            bf = null;
          }
        }
        synchronized (table) {
          files.placed(f, st.dev(), st.ino());
        }
        f.absent = false;
      }
      f.path = path;
      f.writeThrough = f.writeThrough || !CacheLayout.pathFits(path);
      if (f.fileSlot < 0 || f.dead) {
        return false;
      }
      epochs.storing().lock();
      try {
        data.storeFileMeta(f, true);
      } finally {
        epochs.storing().unlock();
      }
      return true;
    } finally {
      f.lock.writeLock().unlock();
      if (bf != null) {
        bf.close();
      }
    }
  }

  /**
   * The file at {@code path} loses that name: if the mount showed it with an inode number of
   * its own, forget that (the map stays as large as the files created and still there, and
   * the backing filesystem may hand the number to a new file).
   */
  private void forgetShownIno(String path) throws IOException {
    if (files.anyShownIno()) {
      BackingStore.Stat st = backing.stat(path);
      if (st != null) {
        files.forgetShownIno(st.dev(), st.ino());
      }
    }
  }

  private void unlinkIfThere(String path) throws IOException {
    forgetShownIno(path);
    try {
      backing.unlink(path);
    } catch (IOException e) {
      if (!isNoEntry(e)) {
        throw e;
      }
    }
  }

  static boolean isNoEntry(IOException e) {
    return e instanceof NoSuchFileException
        || (e instanceof io.wcfs.nativ.NativeIOException n && n.errno() == 2);
  }

  static String parentOf(String path) {
    int slash = path.lastIndexOf('/');
    return slash < 0 ? "" : path.substring(0, slash);
  }

  // ---- recovery -----------------------------------------------------------------------------

  /**
   * Recovery: takes the committed records found on the device, in order, as pending (their
   * files already recovered by slot), frees the rest, and applies them all.
   */
  void recovered(List<CacheLayout.Record> records, IntList uncommitted) throws IOException {
    for (int i = 0; i < uncommitted.size(); i++) {
      layout.storeRecordFree(uncommitted.get(i));
      layout.flushRecord(uncommitted.get(i));
    }
    synchronized (table) {
      int next = 0;
      for (CacheLayout.Record r : records) {
        CachedFile f = r.fileSlot() >= 0 ? files.bySlot(r.fileSlot()) : null;
        pending.addLast(new Rec(r.index(), r.seq(), r.order(), r.op(), f, r.path1(),
            r.path2()));
        if (f != null) {
          f.pendingRecords++;
        }
        lastOrder = Math.max(lastOrder, r.order());
        next = r.index() + 1;
      }
      // Records are freed oldest first and appended after the newest, so the committed ones
      // left are contiguous in the ring from the oldest on: the ring resumes there.
      head = records.isEmpty() ? 0 : records.get(0).index();
      if (!contiguous(records)) {
        throw new IllegalStateException("namespace journal records are not contiguous in the"
            + " ring; `wcfs check` lists them");
      }
      pendingCount = pending.size();
    }
    if (records.isEmpty()) {
      return;
    }
    LOG.info("namespace journal: applying {} committed records to the backing directory",
        records.size());
    applyLock.lock();
    try {
      while (true) {
        List<Rec> batch = takeBatch();
        if (batch.isEmpty()) {
          break;
        }
        synchronized (table) {
          head = batch.get(0).index; // the ring resumes at the oldest record left
        }
        applyBatch(batch);
      }
    } catch (IOException e) {
      // The backing directory refuses a record now (its claim not held yet, EACCES, a disk
      // error): the records stay, writeback retries them, and the mount shows the names they
      // make, rebuilt here in order.
      LOG.warn("namespace journal: {} records could not be applied to the backing directory"
          + " yet ({}); they stay in the cache and writeback retries them", pendingCount,
          e.toString());
      rebuildOverlay();
    } finally {
      applyLock.unlock();
    }
    synchronized (table) {
      if (pending.isEmpty()) {
        head = 0;
      }
    }
  }

  /** The overlay as the pending records make it, oldest first (recovery). */
  private void rebuildOverlay() {
    List<Rec> recs;
    synchronized (table) {
      recs = new ArrayList<>(pending);
    }
    for (Rec r : recs) {
      switch (r.op) {
        case CREATE -> overlay.put(r.path1, r.file, r.order);
        case UNLINK -> overlay.whiteout(r.path1, r.order);
        case RENAME -> {
          overlay.whiteout(r.path1, r.order);
          overlay.put(r.path2, r.file, r.order);
        }
      }
    }
    for (Rec r : recs) { // names of dead files show nothing
      for (String p : r.path2 == null ? List.of(r.path1) : List.of(r.path1, r.path2)) {
        Overlay.Node n = overlay.get(p);
        if (n != null && n.file() != null && n.file().dead) {
          overlay.whiteout(p, n.order());
        }
      }
    }
  }

  private boolean contiguous(List<CacheLayout.Record> records) {
    for (int i = 1; i < records.size(); i++) {
      if (records.get(i).index() != (records.get(i - 1).index() + 1) % capacity) {
        return false;
      }
    }
    return true;
  }
}
