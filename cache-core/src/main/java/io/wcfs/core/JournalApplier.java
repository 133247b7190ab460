package io.wcfs.core;

import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Applies the namespace {@link Journal}'s committed records to the backing directory: run by
 * the writeback thread, by {@code settle} before a change the journal does not make, by flush,
 * and by recovery; serialized by {@code applyLock}.
 *
 * <p>Applying goes in batches. A batch holds committed records in order, no two of which
 * touch the same name or the same file (nor rename across the same two directories both
 * ways, which would leave no order to fsync them in), so that re-applying a batch cut by a crash is
 * idempotent without guessing: create without truncating (an existing name is this record's
 * file, created before the crash), unlink with ENOENT done, rename with the source gone and
 * the target there done, rename with both names on one file (cut between its directories'
 * fsyncs) finished by unlinking the source. Per batch, in this order:
 * <ol>
 *   <li>each record's effect in the backing directory; a file renamed is first written back
 *       and fsync'd under its old name, so it shows up at its new name with its data (an
 *       atomic save stays atomic in the backing directory);
 *   <li>fsync of the new files and of every directory touched, a rename's target directory
 *       before its source (under POSIX-strict renames a crash between the fsyncs then leaves
 *       the file under both names, which re-applying finishes, never under neither);
 *   <li>the files' new places (path, no longer absent) in their file slots, committed;
 *   <li>the records freed, durably; then the overlay forgets the names.
 * </ol>
 * A file created and unlinked before its CREATE was applied (both records committed) never
 * reaches the backing directory: its records are skipped ({@code creates_elided}).
 */
final class JournalApplier {

  private static final Logger LOG = LoggerFactory.getLogger(JournalApplier.class);

  private final Journal journal;
  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Overlay overlay;
  private final Counters.Journal counters;
  private final Writeback writeback;
  private final DataPath data;
  private final CacheLayout layout;
  /** Serializes applying (writeback thread, settle, flush, recovery). */
  private final ReentrantLock applyLock = new ReentrantLock();

  JournalApplier(Journal journal, CacheLayout layout, BackingStore backing, SlotTable table, FileRegistry files,
      Epochs epochs, Overlay overlay, Counters.Journal counters, Writeback writeback,
      DataPath data) {
    this.journal = journal;
    this.layout = layout;
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.overlay = overlay;
    this.counters = counters;
    this.writeback = writeback;
    this.data = data;
  }

  boolean writebackRunning() {
    return writeback.running();
  }

  /**
   * Applies committed records to the backing directory, batch by batch, until none is left;
   * with {@code all}, first commits so that every record appended so far counts. Returns the
   * number of records applied or skipped.
   */
  int apply(boolean all) throws IOException {
    if (all && journal.pendingCount() > 0) {
      epochs.commit();
    }
    applyLock.lock();
    try {
      int done = 0;
      while (true) {
        List<Journal.Rec> batch = journal.takeBatch();
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

  /** A file that never reached the backing directory and whose every name is gone, for sure. */
  private boolean elided(CachedFile f) {
    return f != null && f.absent && f.dead && f.deathEpoch < epochs.committedSeq();
  }

  private void applyBatch(List<Journal.Rec> batch) throws IOException {
    backing.checkMayWriteBack();
    Set<String> dirs = new LinkedHashSet<>();
    // Renames across directories: (target's, source's directory), fsync'd in that order
    // (DirectorySyncs.fsyncOrder): a crash between the two leaves both names, which re-applying the
    // record finishes, never none.
    List<String[]> renames = new ArrayList<>();
    List<CachedFile> created = new ArrayList<>();
    List<BackingStore.BackingFile> createdFiles = new ArrayList<>();
    List<Journal.Rec> moved = new ArrayList<>();
    try {
      // 1. Effects, in order.
      for (Journal.Rec r : batch) {
        CachedFile f = r.file;
        boolean retry = r.attempted;
        r.attempted = true;
        LOG.debug("apply {} {} {} slot {} elided {}", r.op, r.path1, r.path2,
            f == null ? -1 : f.fileSlot, elided(f));
        switch (r.op) {
          case CREATE -> {
            if (elided(f)) {
              counters.createsElided.increment();
              if (retry) {
                // A batch cut before (by a crash or an error) may have created it already;
                // nobody else can have made this name since (the batch owns it).
                unlinkIfThere(r.path1);
                dirs.add(BackingStore.parentOf(r.path1));
              }
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
            dirs.add(BackingStore.parentOf(r.path1));
          }
          case UNLINK -> {
            if (elided(f)) {
              continue;
            }
            unlinkIfThere(r.path1);
            dirs.add(BackingStore.parentOf(r.path1));
          }
          case RENAME -> {
            if (elided(f)) {
              unlinkIfThere(r.path2); // what the rename replaced goes all the same
              dirs.add(BackingStore.parentOf(r.path2));
              continue;
            }
            if (backing.stat(r.path1) == null && backing.stat(r.path2) != null) {
              // Applied before a crash (its data went there first): nothing to redo, and the
              // file is found at its new name from here on.
              dirs.add(BackingStore.parentOf(r.path1));
              dirs.add(BackingStore.parentOf(r.path2));
              renames.add(new String[] {BackingStore.parentOf(r.path2), BackingStore.parentOf(r.path1)});
              if (f != null) {
                f.path = r.path2;
                moved.add(r);
              }
              continue;
            }
            if (f != null && !f.dead) {
              writeback.writeBackFile(f); // its data there, fsync'd, before its new name
            }
            forgetShownIno(r.path2);
            // Under the file's lock with its new path: a getattr through the overlay reads
            // the path under that lock (WriteCache.withShown), never the old one after the
            // rename.
            if (f != null) {
              f.lock.writeLock().lock();
            }
            try {
              if (sameFile(r.path1, r.path2)) {
                // Applied before a crash that kept both names (each directory's part of a
                // rename durable with its own fsync, the target's first): rename(2) of two
                // links to one file does nothing, so the old name goes by itself.
                backing.unlink(r.path1);
              } else {
                backing.rename(r.path1, r.path2);
              }
            } catch (IOException e) {
              if (!isNoEntry(e) || backing.stat(r.path2) == null) {
                throw e;
              }
              // Applied before a crash: the source is gone, the target holds it.
            } finally {
              if (f != null) {
                f.path = r.path2;
                f.lock.writeLock().unlock();
              }
            }
            dirs.add(BackingStore.parentOf(r.path1));
            dirs.add(BackingStore.parentOf(r.path2));
            renames.add(new String[] {BackingStore.parentOf(r.path2), BackingStore.parentOf(r.path1)});
            if (f != null) {
              // f.path is where getattr finds it from now on (set above); its slot says so
              // after the fsyncs (a crash before that re-applies the record: found done).
              moved.add(r);
            }
          }
        }
      }
      // 2. Durable: new files (their mode and owner), then every directory touched, a
      // rename's target before its source.
      for (BackingStore.BackingFile bf : createdFiles) {
        bf.sync();
      }
      for (String d : DirectorySyncs.fsyncOrder(dirs, renames)) {
        if (backing.stat(d) != null) {
          backing.syncDirectory(d);
        }
      }
      // 3. Where the files are now, in their slots, committed before the records go.
      boolean stored = false;
      for (int i = 0; i < created.size(); i++) {
        CachedFile f = created.get(i);
        String path = null;
        for (Journal.Rec r : batch) {
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
      for (Journal.Rec r : moved) {
        stored |= placed(r.file, r.path2, null, null);
      }
      for (Journal.Rec r : batch) {
        // Before its record goes, a killed file's slot says DEAD: from then on nothing but
        // the slot speaks of it, and recovery must not write it anywhere.
        if (r.victim != null && r.victim.dead) {
          stored |= markDead(r.victim);
        }
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
    // 4. The records go, durably; then the overlay forgets what they set. A record the last
    // commit record lists must not change before SeqCount passes its epoch.
    epochs.settleCommitPoint();
    for (Journal.Rec r : batch) {
      layout.storeRecordFree(r.index);
      layout.flushRecord(r.index);
    }
    epochs.commitMemory();
    List<CachedFile> release = journal.retired(batch);
    for (Journal.Rec r : batch) {
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
      if (f.fileSlot < 0) {
        return false;
      }
      // Stored for a dead file too: its death may not be committed yet, and a power loss that
      // takes the death back must find the file where this batch put it.
      data.rewriteFileMeta(f);
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

  /** Whether both paths name one backing file (two links to it). */
  private boolean sameFile(String a, String b) throws IOException {
    BackingStore.Stat x = backing.stat(a);
    BackingStore.Stat y = x == null ? null : backing.stat(b);
    return y != null && x.regularFile() && x.dev() == y.dev() && x.ino() == y.ino();
  }

  /** Stores the DEAD mark in a killed file's slot. */
  private boolean markDead(CachedFile f) throws IOException {
    f.lock.writeLock().lock();
    try {
      if (f.fileSlot < 0) {
        return false;
      }
      data.rewriteFileMeta(f);
      return true;
    } finally {
      f.lock.writeLock().unlock();
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


  // ---- recovery -----------------------------------------------------------------------------

  /**
   * Recovery: applies every pending record; if the backing directory refuses one now, keeps
   * them all and shows the names they make (the overlay, rebuilt in order).
   */
  void recovered() throws IOException {
    int n = journal.pendingCount();
    if (n == 0) {
      return;
    }
    LOG.info("namespace journal: applying {} committed records to the backing directory", n);
    applyLock.lock();
    try {
      while (true) {
        List<Journal.Rec> batch = journal.takeBatch();
        if (batch.isEmpty()) {
          break;
        }
        applyBatch(batch);
      }
    } catch (IOException e) {
      // The backing directory refuses a record now (its claim not held yet, EACCES, a disk
      // error): the records stay, writeback retries them, and the mount shows the names they
      // make, rebuilt here in order.
      LOG.warn("namespace journal: {} records could not be applied to the backing directory"
          + " yet ({}); they stay in the cache and writeback retries them",
          journal.pendingCount(),
          e.toString());
      rebuildOverlay();
    } finally {
      applyLock.unlock();
    }
  }


  /** The overlay as the pending records make it, oldest first (recovery). */
  private void rebuildOverlay() {
    List<Journal.Rec> recs = journal.pendingSnapshot();
    for (Journal.Rec r : recs) {
      switch (r.op) {
        case CREATE -> overlay.put(r.path1, r.file, r.order);
        case UNLINK -> overlay.whiteout(r.path1, r.order);
        case RENAME -> {
          overlay.whiteout(r.path1, r.order);
          overlay.put(r.path2, r.file, r.order);
        }
      }
    }
    for (Journal.Rec r : recs) { // names of dead files show nothing
      for (String p : r.path2 == null ? List.of(r.path1) : List.of(r.path1, r.path2)) {
        Overlay.Node n = overlay.get(p);
        if (n != null && n.file() != null && n.file().dead) {
          overlay.whiteout(p, n.order());
        }
      }
    }
  }
}
