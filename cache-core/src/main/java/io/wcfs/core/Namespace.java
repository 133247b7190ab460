package io.wcfs.core;

import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every change of names and attributes goes through here. create, unlink and rename of
 * regular files are journaled (docs/design.md, "Namespace journal"): a
 * record in the open epoch, the {@link Overlay} updated, nothing done to the backing directory
 * until writeback applies the record ({@link Journal}). What is not journaled (directories,
 * links, special files, names too long for a record, a file with other hard links that holds
 * cached data) is done synchronously on the backing directory after every pending record that
 * touches those names was applied ({@link #settle}), so nothing synchronous overtakes the
 * journal's order: unlink and rename there are {@link DirectNamespace}'s, and other changes
 * are made durable by the next commit's directory fsyncs.
 */
final class Namespace {
  private static final Logger LOG = LoggerFactory.getLogger(Namespace.class);
  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Writeback writeback;
  private final DataPath data;
  private final Journal journal;
  private final Overlay overlay;
  /**
   * Held exclusively here: namespace operations are serialized (and the journal's appends with
   * them); rename and unlink exclude writers that record a path.
   */
  private final ReentrantReadWriteLock namespaceLock;
  private final Counters.Journal counters;
  /** The synchronous unlink and rename, for what the journal does not take. */
  private final DirectNamespace direct;

  Namespace(BackingStore backing, SlotTable table, FileRegistry files, Epochs epochs,
      Writeback writeback, DataPath data, Journal journal, Overlay overlay,
      ReentrantReadWriteLock namespaceLock, Counters.Journal counters) {
    this.counters = counters;
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.writeback = writeback;
    this.data = data;
    this.journal = journal;
    this.overlay = overlay;
    this.namespaceLock = namespaceLock;
    this.direct = new DirectNamespace(backing, table, files, epochs, writeback, data,
        namespaceLock);
  }

  // ---- looking names up -------------------------------------------------------------------

  /**
   * The file the mount shows at {@code path} when the overlay decides: null when the backing
   * directory does; throws NoSuchFileException for a name removed in the overlay.
   */
  CachedFile shown(String path) throws NoSuchFileException {
    Overlay.Node n = overlay.get(path);
    if (n == null) {
      return null;
    }
    if (n.file() == null) {
      throw new NameRemoved(path);
    }
    return n.file();
  }

  /** The regular file at {@code path}, with one more handle on it. */
  CachedFile open(String path) throws IOException {
    CachedFile f = holdShown(path);
    return f != null ? f : files.open(path);
  }

  /**
   * The file the overlay shows at {@code path}, with one more handle on it (give it back with
   * {@link FileRegistry#release}); null when the backing directory decides. The overlay is
   * read without a lock while the applier retires names and writeback drops files that hold
   * nothing more: a file dropped between the look and the handle is looked up again, and the
   * overlay no longer shows it by then (the applier retires a name before the file can go).
   */
  private CachedFile holdShown(String path) throws IOException {
    long deadline = 0;
    while (true) {
      CachedFile f = shown(path);
      if (f == null) {
        return null;
      }
      afterOverlayRead.run();
      if (files.hold(f)) {
        return f;
      }
      long now = System.nanoTime();
      if (deadline == 0) {
        deadline = now + STRAY_NANOS;
      } else if (now - deadline > 0) {
        takeBack(path, f);
      }
      Thread.yield();
    }
  }

  /**
   * Not a window any more: the overlay shows a file the engine dropped. Kept (its writes are
   * the name's), known again by its backing file, and said so; refused (EIO) if the engine
   * knows another file by that backing file by now.
   */
  private void takeBack(String path, CachedFile f) throws IOException {
    if (!files.adopt(f)) {
      throw new IOException(path + ": the namespace overlay shows a file (cache slot "
          + f.fileSlot + ") the engine dropped and now knows another file for; please report"
          + " this with the log");
    }
    LOG.error("{}: the namespace overlay showed a file (cache slot {}) the engine no longer"
        + " knew; taken back. Please report this with the log.", path, f.fileSlot);
    counters.strayFiles.increment();
  }

  /** How long the overlay may show a file the engine dropped before that is taken as a bug. */
  private static final long STRAY_NANOS = 1_000_000_000L;

  /** Tests: runs between the overlay's answer and the handle in {@link #holdShown}. */
  volatile Runnable afterOverlayRead = () -> { };

  /**
   * Applies every pending record that touches {@code paths} or names below them (all pending
   * records, in order: the simplest order that is right), so that a synchronous change of
   * the backing directory finds it as the mount shows it.
   */
  void settle(String... paths) throws IOException {
    for (String p : paths) {
      if (overlay.touches(p)) {
        journal.apply(true);
        return;
      }
    }
  }

  // ---- journaled operations ---------------------------------------------------------------

  /** Takes the namespace lock with room for a record (waiting for writeback without it). */
  private void lockWithRoom() throws IOException {
    while (true) {
      journal.awaitRoom(1);
      namespaceLock.writeLock().lock();
      synchronized (table) {
        if (journal.hasRoom(1)) {
          return;
        }
      }
      namespaceLock.writeLock().unlock();
    }
  }

  /**
   * The directory a new name goes in must exist (directories are not journaled: the backing
   * directory knows them), as create(2) and rename(2) require.
   */
  private void checkParent(String path) throws IOException {
    String parent = BackingStore.parentOf(path);
    BackingStore.Stat dir = parent.isEmpty() ? null : backing.stat(parent);
    if (!parent.isEmpty() && (dir == null || !dir.directory())) {
      throw dir == null ? new NoSuchFileException(parent) : new NotDirectoryException(parent);
    }
  }

  /** A file in the backing directory with other hard links there. */
  private boolean linkedElsewhere(CachedFile f) throws IOException {
    if (f == null || f.absent || f.path == null) {
      return false;
    }
    BackingStore.Stat st = backing.stat(f.path);
    return st != null && st.nlink() > 1;
  }

  /**
   * Creates a regular file, open: journaled, so nothing touches the backing directory now.
   * {@code exclusive} false opens an existing file instead (O_CREAT without O_EXCL).
   */
  CachedFile create(String path, int mode, int uid, int gid, boolean exclusive)
      throws IOException {
    lockWithRoom();
    try {
      Overlay.Node n = overlay.get(path);
      boolean exists = n != null ? n.file() != null : backing.stat(path) != null;
      if (exists) {
        if (exclusive) {
          throw new FileAlreadyExistsException(path);
        }
        return open(path);
      }
      checkParent(path);
      boolean room;
      synchronized (table) {
        room = files.hasFreeSlot() && journal.hasRoom(1);
      }
      if (!room || !CacheLayout.recordFits(path, null) || !CacheLayout.pathFits(path)) {
        // Not journaled: created now, durable with the next commit's directory fsyncs.
        settle(path);
        backing.create(path, mode, uid, gid).close();
        epochs.namespaceChanged(path);
        return files.open(path);
      }
      long now = DataPath.now();
      CachedFile f = new CachedFile(0, 0, null, 0, now);
      f.absent = true;
      f.mode = mode;
      f.uid = uid;
      f.gid = gid;
      f.atimeNanos = now;
      f.ctimeNanos = now;
      f.lock.writeLock().lock();
      try {
        synchronized (table) {
          files.registerAbsent(f);
          files.takeSlot(f);
          f.handles = 1;
        }
        epochs.storing().lock();
        try {
          data.storeFileMeta(f, true);
          long order = journal.append(CacheLayout.Op.CREATE, f, path, null, null);
          // Under epochLock with the record: no commit, so no application and retirement of
          // it, can come before the name is in the overlay (it would stay there for good).
          overlay.put(path, f, order);
        } finally {
          epochs.storing().unlock();
        }
      } finally {
        f.lock.writeLock().unlock();
      }
      return f;
    } finally {
      namespaceLock.writeLock().unlock();
    }
  }

  /**
   * unlink: journaled for a regular file or any other non-directory; the file, if the engine
   * knows it, is dead from this epoch on (its blocks dropped, never written back).
   */
  void unlink(String path) throws IOException {
    lockWithRoom();
    try {
      long deadline = System.nanoTime() + STRAY_NANOS;
      while (!unlinkLocked(path, System.nanoTime() - deadline > 0)) {
        Thread.yield(); // the file looked up was dropped from memory meanwhile: again
      }
    } finally {
      namespaceLock.writeLock().unlock();
    }
  }

  /**
   * Whether an unlink ({@code to} null) or a rename can be journaled by its names: the record
   * holds both, and the file versions it rewrites (the moving file's, the dying one's) hold
   * each. A longer name goes to the backing directory now, as the file's data does.
   */
  private static boolean journalable(String path, String to) {
    return CacheLayout.recordFits(path, to) && CacheLayout.pathFits(path)
        && (to == null || CacheLayout.pathFits(to));
  }

  /** unlink under namespaceLock; false: the file looked up was dropped meanwhile, again. */
  private boolean unlinkLocked(String path, boolean takeBack) throws IOException {
    if (!journalable(path, null)) {
      unlinkNow(path);
      return true;
    }
    CachedFile f = shown(path);
    if (f == null) {
      BackingStore.Stat st = backing.stat(path);
      if (st == null) {
        throw new NoSuchFileException(path);
      }
      f = st.regularFile() ? files.known(st) : null;
      if (st.directory() || st.nlink() > 1) {
        // A file with other names: they show the link count now, and keep its data.
        unlinkNow(path);
        return true;
      }
    }
    if (linkedElsewhere(f)) {
      unlinkNow(path);
      return true;
    }
    return removeName(CacheLayout.Op.UNLINK, f, path, null, null, takeBack);
  }

  /**
   * rename of a regular file over nothing or over another regular file: journaled. Anything
   * else (directories, special files, a target with other hard links) is done now.
   */
  void rename(String from, String to) throws IOException {
    lockWithRoom();
    CachedFile f = null;
    try {
      // A handle for the operation's length: the file is moved by the record, so it must be
      // the one the engine knows (writeback may drop an idle file at any time).
      f = holdShown(from);
      if (f == null) {
        BackingStore.Stat st = backing.stat(from);
        if (st == null) {
          throw new NoSuchFileException(from);
        }
        if (!st.regularFile()) {
          renameNow(from, to);
          return;
        }
        f = files.open(from, st);
      }
      checkParent(to);
      long deadline = System.nanoTime() + STRAY_NANOS;
      while (!renameOver(f, from, to, System.nanoTime() - deadline > 0)) {
        Thread.yield(); // the file it replaces was dropped from memory meanwhile: again
      }
    } finally {
      try {
        if (f != null) {
          files.release(f);
        }
      } finally {
        namespaceLock.writeLock().unlock();
      }
    }
  }

  /**
   * The rest of rename, {@code f} held, under namespaceLock: what {@code to} holds now, and
   * the record; false: that file was dropped from memory before the record, look again.
   */
  private boolean renameOver(CachedFile f, String from, String to, boolean takeBack)
      throws IOException {
    CachedFile victim = null;
    Overlay.Node m = overlay.get(to);
    if (m != null) {
      victim = m.file();
      if (linkedElsewhere(victim)) {
        renameNow(from, to);
        return true;
      }
    } else {
      BackingStore.Stat st = backing.stat(to);
      if (st != null && (!st.regularFile() || st.nlink() > 1)) {
        renameNow(from, to);
        return true;
      }
      if (st != null) {
        victim = files.known(st);
        if (victim == null && st.dev() == f.dev && st.ino() == f.ino) {
          victim = f;
        }
      }
    }
    if (victim == f) {
      return true; // two names of one file: rename does nothing (POSIX)
    }
    boolean room;
    synchronized (table) {
      room = f.fileSlot >= 0 || files.hasFreeSlot();
    }
    if (!room || !journalable(from, to)) {
      renameNow(from, to);
      return true;
    }
    return removeName(CacheLayout.Op.RENAME, f, from, to, victim, takeBack);
  }

  /**
   * The record, the file slot it names, the dead file and the overlay, in one epoch: unlink
   * ({@code to} null: {@code f} is the file losing its name, may be null) or rename ({@code f}
   * moves from {@code path} to {@code to}, {@code victim} was there). False, with nothing
   * done: the dying file was dropped from memory since the caller looked it up.
   */
  private boolean removeName(CacheLayout.Op op, CachedFile f, String path, String to,
      CachedFile victim, boolean takeBack) throws IOException {
    CachedFile dying = op == CacheLayout.Op.UNLINK ? f : victim;
    CachedFile moving = op == CacheLayout.Op.RENAME ? f : null;
    if (moving != null) {
      moving.lock.writeLock().lock();
    }
    if (dying != null) {
      dying.lock.writeLock().lock();
    }
    try {
      if (dying != null) {
        synchronized (table) {
          if (!files.holds(dying)) {
            // Dropped from memory since it was looked up (nothing cached, no handle): another
            // may know its backing file by now. Looked up again; its write lock keeps it now.
            if (!takeBack) {
              return false;
            }
            takeBack(path, dying); // still the one found after a second of looking: a bug
          }
        }
        if (!dying.absent && dying.handles > 0) {
          // Open: its descriptor from now on, while its path still names it (the backing
          // name goes when the record is applied; a path opened after that finds another).
          files.backingFile(dying);
        }
      }
      epochs.storing().lock();
      try {
        if (moving != null && moving.fileSlot < 0) {
          synchronized (table) {
            files.takeSlot(moving); // records name a file by its slot
          }
          data.storeFileMeta(moving, true);
        }
        CachedFile named = moving != null ? moving
            : dying != null && dying.fileSlot >= 0 ? dying : null;
        long order = journal.append(op, named, path, to,
            dying != null && dying.fileSlot >= 0 ? dying : null);
        if (dying != null) {
          kill(dying);
        }
        overlay.whiteout(path, order);
        if (to != null) {
          overlay.put(to, moving, order);
        }
        return true;
      } finally {
        epochs.storing().unlock();
      }
    } finally {
      if (dying != null) {
        dying.lock.writeLock().unlock();
      }
      if (moving != null) {
        moving.lock.writeLock().unlock();
      }
    }
  }

  /**
   * Its last name is gone in this epoch: its blocks are dropped (freed by the commit), or,
   * while it is open, kept for its handles until the last close ({@link #closed}); its slot
   * stays until the records naming it are applied. Needs f.lock and epochLock shared.
   */
  private void kill(CachedFile f) throws IOException {
    f.dead = true;
    f.deathEpoch = epochs.openEpoch();
    boolean open;
    synchronized (table) {
      open = f.handles > 0;
    }
    if (open && (f.absent || f.file != null)) {
      // Still open (unlinked or renamed over while open, as POSIX allows): its handles read
      // and write its blocks, and for the rest its backing inode, held open since before its
      // name could go (removeName); the blocks go at the last close (closed).
      return;
    }
    if (!f.absent) {
      f.writeThrough = true;
    }
    if (f.fileSlot >= 0) {
      data.dropBlocks(f, 0);
    }
    // No DEAD mark stored here: the record names the file it kills, which recovery takes as
    // its death; rewriting the slot now could tear its newest version, uncommitted writes
    // that returned included, if the daemon were killed. The applier stores the mark before
    // the record goes.
  }

  /** A file's last handle closed: a dead file's blocks go now. */
  void closed(CachedFile f) throws IOException {
    if (!f.dead || f.fileSlot < 0) {
      return;
    }
    f.lock.writeLock().lock();
    try {
      epochs.storing().lock();
      try {
        data.dropBlocks(f, 0);
      } finally {
        epochs.storing().unlock();
      }
    } finally {
      f.lock.writeLock().unlock();
    }
    // Its records may have gone while it was open (the applier's release found blocks then):
    // the slot, and the file, go now; with records left, their application releases it.
    writeback.releaseIfDone(f);
  }

  // ---- attributes -------------------------------------------------------------------------

  /**
   * chmod, chown and utimens of a file not in the backing directory yet: kept in its slot,
   * committed with the next commit, applied when writeback creates it. Returns false when the
   * file is in the backing directory (the caller changes it there; {@code null} fields stay).
   */
  boolean setAttributes(String path, Integer mode, Integer uid, Integer gid, Long atimeNanos,
      Long mtimeNanos) throws IOException {
    namespaceLock.writeLock().lock();
    try {
      CachedFile f = shown(path);
      if (f == null || !f.absent) {
        return false;
      }
      f.lock.writeLock().lock();
      try {
        if (mode != null) {
          f.mode = (f.mode & ~07777) | (mode & 07777);
        }
        if (uid != null) {
          f.uid = uid;
        }
        if (gid != null) {
          f.gid = gid;
        }
        if (uid != null || gid != null) {
          // As chown(2) on Linux, whoever calls it: set-user-ID goes, and set-group-ID with
          // group execute (without it the bit marks mandatory locking, and stays).
          f.mode &= ~04000;
          if ((f.mode & 010) != 0) {
            f.mode &= ~02000;
          }
        }
        if (atimeNanos != null) {
          f.atimeNanos = atimeNanos;
        }
        if (mtimeNanos != null) {
          f.mtimeNanos = mtimeNanos;
        }
        f.ctimeNanos = Math.max(f.ctimeNanos, DataPath.now());
        data.rewriteFileMeta(f);
      } finally {
        f.lock.writeLock().unlock();
      }
      return true;
    } finally {
      namespaceLock.writeLock().unlock();
    }
  }

  /** chmod of a name in the backing directory; one the journal created: {@link #setAttributes}. */
  void chmod(String path, int mode) throws IOException {
    settle(path);
    direct.chmod(path, mode);
  }

  /** chown of a name in the backing directory (-1: unchanged); see {@link #chmod}. */
  void chown(String path, int uid, int gid) throws IOException {
    settle(path);
    direct.chown(path, uid, gid);
  }

  /** utimens of a name in the backing directory; see {@link #chmod}. */
  void setTimes(String path, BackingStore.TimeSpec atime, BackingStore.TimeSpec mtime)
      throws IOException {
    settle(path);
    direct.setTimes(path, atime, mtime);
    overlay.timesSet(path); // a directory's: what it was set to, not its last entry change
  }

  // ---- not journaled: directories, links, special files -----------------------------------

  void mkdir(String path, int mode) throws IOException {
    settle(path);
    direct.mkdir(path, mode);
  }

  /** After the records on names below it too: a directory the journal empties is empty. */
  void rmdir(String path) throws IOException {
    settle(path);
    direct.rmdir(path);
  }

  void link(String from, String to) throws IOException {
    settle(from, to);
    direct.link(from, to);
  }

  void symlink(String target, String path) throws IOException {
    settle(path);
    direct.symlink(target, path);
  }

  void mknod(String path, int mode, long rdev) throws IOException {
    settle(path);
    direct.mknod(path, mode, rdev);
  }

  /** unlink straight in the backing directory, after the records on the name. */
  private void unlinkNow(String path) throws IOException {
    settle(path);
    direct.unlink(path);
  }

  /** rename straight in the backing directory, after the records on both names. */
  private void renameNow(String from, String to) throws IOException {
    settle(from, to);
    direct.rename(from, to);
  }
}
