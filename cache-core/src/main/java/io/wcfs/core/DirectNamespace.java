package io.wcfs.core;

import java.io.IOException;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Changes made straight in the backing directory, for what the journal does not take. unlink
 * and rename (directories, a file with other hard links, names too long for a record) are
 * ordered against cached data: an unlinked or renamed-over file's blocks are freed only after
 * the change is durable, an 'unlinking' mark committed first so that recovery can finish an
 * interrupted one, and a renamed file's blocks are written back before its name changes.
 * mkdir, rmdir, link, symlink and mknod touch no cached data: the directory they change is
 * fsync'd by the next commit. chmod, chown and utimens of a file in the backing directory are
 * made there; the engine keeps a cached file's mtime so that writeback does not undo it.
 * {@link Namespace} applies the pending journal records that touch the names first ({@code
 * settle}).
 */
final class DirectNamespace {
  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Writeback writeback;
  private final DataPath data;
  /** Held exclusively here: rename and unlink exclude writers that record a path. */
  private final ReentrantReadWriteLock namespaceLock;

  DirectNamespace(BackingStore backing, SlotTable table, FileRegistry files, Epochs epochs,
      Writeback writeback, DataPath data, ReentrantReadWriteLock namespaceLock) {
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.writeback = writeback;
    this.data = data;
    this.namespaceLock = namespaceLock;
  }

  /**
   * unlink: the name goes first, then the cached blocks, freed by a commit that first fsyncs
   * the directory (so a power loss cannot bring the name back without its blocks; a crash
   * between the two puts the blocks in lost+found, see recovery). A file with other links is
   * written back first, so the data survives under them.
   */
  void unlink(String path) throws IOException {
    namespaceLock.writeLock().lock();
    try {
      BackingStore.Stat st = backing.stat(path);
      CachedFile f = st == null ? null : files.known(st);
      if (f == null) {
        backing.unlink(path);
        epochs.namespaceChanged(path);
        forgetShownIno(st);
        return;
      }
      if (f.handles > 0 || st.nlink() > 1) {
        // Its data where its other names or its open handles find it: open handles go on
        // reading and writing it through its descriptor, held open from now (while the path
        // still names it; writers wait for namespaceLock: nothing is cached between this and
        // the drop).
        writeback.writeBackFile(f);
        if (f.handles > 0) {
          files.backingFile(f);
        }
      }
      if (st.nlink() > 1) {
        backing.unlink(path);
        epochs.namespaceChanged(path);
        f.writeThrough = true; // its recorded name is gone; the other names are unknown here
        return;
      }
      markUnlinking(f, true);
      try {
        backing.unlink(path);
      } catch (IOException e) {
        markUnlinking(f, false);
        throw e;
      }
      epochs.namespaceChanged(path);
      forgetShownIno(st);
      discard(f);
    } finally {
      namespaceLock.writeLock().unlock();
    }
  }

  /**
   * A backing file's last name went: the inode number the mount showed for it (it was
   * created through the mount) is forgotten, as the applier does, since the backing
   * filesystem may give its number to the next file.
   */
  private void forgetShownIno(BackingStore.Stat st) {
    if (st != null && st.regularFile() && st.nlink() <= 1) {
      files.forgetShownIno(st.dev(), st.ino());
    }
  }

  /**
   * rename: files under the old name that hold blocks are written back first, so a crash can
   * never write their data to a path that no longer names them; a replaced target is dropped
   * after the rename.
   */
  void rename(String from, String to) throws IOException {
    namespaceLock.writeLock().lock();
    try {
      BackingStore.Stat src = backing.stat(from);
      BackingStore.Stat dst = backing.stat(to);
      List<CachedFile> moving;
      synchronized (table) {
        moving = files.under(from);
      }
      for (CachedFile f : moving) {
        writeback.writeBackFile(f);
      }
      CachedFile victim = null;
      if (dst != null && dst.regularFile() && (src == null || src.ino() != dst.ino())) {
        victim = files.known(dst);
        if (victim != null && (victim.handles > 0 || dst.nlink() > 1)) {
          writeback.writeBackFile(victim); // for its other names, or its open handles
          if (victim.handles > 0) {
            files.backingFile(victim); // read on through its descriptor, opened now
          }
        }
        if (victim != null && dst.nlink() > 1) {
          victim.writeThrough = true;
          victim = null;
        }
      }
      if (victim != null) {
        markUnlinking(victim, true);
      }
      try {
        backing.rename(from, to);
      } catch (IOException e) {
        if (victim != null) {
          markUnlinking(victim, false);
        }
        throw e;
      }
      epochs.namespaceRenamed(from, to); // the target's directory fsync'd first
      if (dst != null && (src == null || src.ino() != dst.ino())) {
        forgetShownIno(dst);
      }
      for (CachedFile f : moving) {
        String p = f.path;
        f.path = to + p.substring(from.length());
        f.writeThrough = f.writeThrough || !CacheLayout.pathFits(f.path);
      }
      if (victim != null) {
        discard(victim);
      }
    } finally {
      namespaceLock.writeLock().unlock();
    }
  }

  /**
   * Commits the mark that the file's name is about to go (or comes back, when the backing call
   * failed), so that recovery can tell an interrupted unlink from a file that vanished.
   */
  private void markUnlinking(CachedFile f, boolean unlinking) throws IOException {
    f.lock.writeLock().lock();
    try {
      if (f.fileSlot < 0 || f.unlinking == unlinking) {
        return;
      }
      epochs.storing().lock();
      try {
        f.unlinking = unlinking;
        data.storeFileMeta(f, true);
      } finally {
        epochs.storing().unlock();
      }
      epochs.commit();
    } finally {
      f.lock.writeLock().unlock();
    }
  }


  /** Drops a file whose last name is gone: blocks and file slot freed by a commit. */
  private void discard(CachedFile f) throws IOException {
    f.lock.writeLock().lock();
    try {
      f.writeThrough = true; // open handles write to the nameless inode directly
      f.path = null;
      if (f.fileSlot < 0) {
        return;
      }
      epochs.storing().lock();
      try {
        data.dropBlocks(f, 0);
        synchronized (table) {
          epochs.fileSlotReleased(f.fileSlot);
          f.fileSlot = -1;
          f.versionSeq = CacheLayout.FREE;
          files.forgetIfUnused(f);
        }
      } finally {
        epochs.storing().unlock();
      }
      epochs.commit();
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  // ---- directories, links, special files: no cached data involved ------------------------
  // No namespaceLock: no writer records these names, and the kernel holds the parent
  // directory's lock for each of these calls, so no create of the same name runs meanwhile.

  void mkdir(String path, int mode) throws IOException {
    backing.mkdir(path, mode);
    epochs.namespaceChanged(path);
  }

  void rmdir(String path) throws IOException {
    backing.rmdir(path);
    epochs.namespaceChanged(path);
  }

  void link(String from, String to) throws IOException {
    backing.link(from, to);
    epochs.namespaceChanged(to);
  }

  void symlink(String target, String path) throws IOException {
    backing.symlink(target, path);
    epochs.namespaceChanged(path);
  }

  void mknod(String path, int mode, long rdev) throws IOException {
    backing.mknod(path, mode, rdev);
    epochs.namespaceChanged(path);
  }

  // ---- attributes of a file in the backing directory ---------------------------------------

  void chmod(String path, int mode) throws IOException {
    backing.chmod(path, mode);
  }

  void chown(String path, int uid, int gid) throws IOException {
    backing.chown(path, uid, gid);
  }

  /**
   * utimens: made on the backing file, and a cached file keeps the new mtime so that writeback
   * (which sets the mtime it keeps) does not undo it; for {@code NOW}, the one the backing
   * filesystem's clock gave.
   */
  void setTimes(String path, BackingStore.TimeSpec atime, BackingStore.TimeSpec mtime)
      throws IOException {
    backing.setTimes(path, atime, mtime);
    if (mtime.isOmit()) {
      return;
    }
    BackingStore.Stat st = backing.stat(path);
    CachedFile f = st == null ? null : files.known(st);
    if (f == null) {
      return;
    }
    f.lock.writeLock().lock();
    try {
      f.mtimeNanos = mtime.isNow() ? st.mtimeNanos() : mtime.toNanos();
      if (f.fileSlot >= 0) {
        epochs.storing().lock();
        try {
          data.storeFileMeta(f);
        } finally {
          epochs.storing().unlock();
        }
      }
    } finally {
      f.lock.writeLock().unlock();
    }
  }
}
