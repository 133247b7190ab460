package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The files the engine knows (open through the mount, or holding something in the cache), by
 * their backing file's {@code (st_dev, st_ino)} in this mount and by file-table slot, and the
 * free file-table slots. The one place a file is dropped from memory ({@link
 * #forgetIfUnused}). Every field is guarded by the engine's index monitor ({@code index},
 * the {@link SlotTable}); methods marked "needs index" want it held by the caller.
 */
final class FileRegistry {
  private static final Logger LOG = LoggerFactory.getLogger(FileRegistry.class);

  private final Object index;
  private final BackingStore backing;
  private final Map<CachedFile.Key, CachedFile> files = new HashMap<>();
  private final CachedFile[] byFileSlot;
  /** Free file-table slots, a stack. */
  private final int[] freeFileSlots;
  private int freeFileSlotCount;

  FileRegistry(Object index, BackingStore backing, int fileSlots) {
    this.index = index;
    this.backing = backing;
    this.byFileSlot = new CachedFile[fileSlots];
    this.freeFileSlots = new int[fileSlots];
  }

  /** The file at {@code path} (a regular backing file), with one more handle on it. */
  CachedFile open(String path) throws IOException {
    BackingStore.Stat st = backing.stat(path);
    if (st == null) {
      throw new java.nio.file.NoSuchFileException(path);
    }
    if (!st.regularFile()) {
      throw new IOException(path + " is not a regular file");
    }
    return open(path, st);
  }

  /**
   * The file at {@code path} ({@code st}, a regular file), with one more handle on it: known
   * from now on, and kept in memory until the handle goes ({@link #release}).
   */
  CachedFile open(String path, BackingStore.Stat st) {
    CachedFile.Key key = new CachedFile.Key(st.dev(), st.ino());
    synchronized (index) {
      CachedFile f = files.get(key);
      if (f == null) {
        f = new CachedFile(st.dev(), st.ino(), path, st.size(), st.mtimeNanos());
        // Created through the mount, written back and dropped from memory since: it goes on
        // showing the inode number it was created with (a rename by another name showed the
        // backing one, and pjdfstest's rename/00.t saw the file change its st_ino).
        Long shown = shownInos.get(key);
        f.shownIno = shown == null ? 0 : shown;
        f.writeThrough = !CacheLayout.pathFits(path);
        if (f.writeThrough) {
          LOG.info("{}: path longer than {} bytes, writes go straight to the backing file", path,
              CacheLayout.MAX_PATH_BYTES);
        }
        files.put(key, f);
      }
      f.handles++;
      return f;
    }
  }

  /**
   * One more handle on {@code f}, a file looked up without index (in the namespace overlay),
   * if the engine still knows it; false if it was dropped from memory meanwhile ({@link
   * #forgetIfUnused}: the overlay retired its name and it held nothing more). A handle on a
   * dropped file would be on a file nobody else finds: its writes shown by no getattr, and a
   * second file made for the same backing file by the next open.
   */
  boolean hold(CachedFile f) {
    synchronized (index) {
      if (!holds(f) || f.dead) { // dead: its name went meanwhile, the lookup answers that
        return false;
      }
      f.handles++;
      return true;
    }
  }

  /**
   * Needs index. Whether the engine still knows {@code f} (not dropped from memory since it
   * was looked up); stays so while the caller also holds {@code f.lock}.
   */
  boolean holds(CachedFile f) {
    return files.get(f.key()) == f;
  }

  /**
   * Makes {@code f}, dropped from memory while still in use, known again by its key; false
   * if another file took that key meanwhile (two files for one backing file: refused).
   */
  boolean adopt(CachedFile f) {
    synchronized (index) {
      return files.putIfAbsent(f.key(), f) == null || holds(f);
    }
  }

  /** Gives back a handle {@link #open} or {@link #hold} took; drops the file if it was the last use. */
  void release(CachedFile f) throws IOException {
    f.lock.writeLock().lock();
    try {
      synchronized (index) {
        f.handles--;
        forgetIfUnused(f);
      }
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /**
   * Drops an idle file from memory: no handle, nothing cached, no backing fsync owed (the
   * descriptor stays open for that fsync, which must reach the file whatever its name is by
   * then). Needs the file's lock and index.
   */
  void forgetIfUnused(CachedFile f) throws IOException {
    if (f.handles == 0 && f.fileSlot < 0 && f.versionSeq == CacheLayout.FREE
        && !f.owesBackingSync && !f.backingSyncRunning && f.pendingRecords == 0) {
      if (files.get(f.key()) == f) {
        files.remove(f.key());
      }
      if (f.file != null) {
        f.file.close();
        f.file = null;
      }
    }
  }

  /** The file's open backing file, opened by its path the first time. */
  BackingStore.BackingFile backingFile(CachedFile f) throws IOException {
    synchronized (f) {
      if (f.file == null) {
        if (f.path == null || f.dead) {
          // A dead file's path may name another file by now (the one renamed over it).
          throw new IOException("backing file of inode " + f.ino + " has no name left");
        }
        f.file = backing.open(f.path);
      }
      return f.file;
    }
  }

  /** The file the engine knows at {@code st}, or null. */
  CachedFile known(BackingStore.Stat st) {
    return known(st.dev(), st.ino());
  }

  CachedFile known(long dev, long ino) {
    synchronized (index) {
      return files.get(new CachedFile.Key(dev, ino));
    }
  }

  /** Needs index. The file whose blocks file-table slot {@code fileSlot} holds. */
  CachedFile bySlot(int fileSlot) {
    return byFileSlot[fileSlot];
  }

  /** Needs index. File slots free to take. */
  int freeSlotCount() {
    return freeFileSlotCount;
  }

  /** Needs index. Whether a file slot is free to take. */
  boolean hasFreeSlot() {
    return freeFileSlotCount > 0;
  }

  /** Needs index. Gives {@code f} a file-table slot. */
  void takeSlot(CachedFile f) {
    f.fileSlot = freeFileSlots[--freeFileSlotCount];
    byFileSlot[f.fileSlot] = f;
    f.version = 1; // storeFileMeta switches to version 0
    f.versionSeq = CacheLayout.FREE;
  }

  /** Needs index. A file slot whose versions are free on the device may be reused. */
  void slotFreed(int fileSlot) {
    byFileSlot[fileSlot] = null;
    freeFileSlots[freeFileSlotCount++] = fileSlot;
  }

  /** Needs index. Files whose path is {@code dir} or below it. */
  List<CachedFile> under(String dir) {
    List<CachedFile> out = new ArrayList<>();
    for (CachedFile f : files.values()) {
      String p = f.path;
      if (p != null && (p.equals(dir) || p.startsWith(dir + "/"))) {
        out.add(f);
      }
    }
    return out;
  }

  /**
   * Needs index. Blocks held for files unlinked while open: committed, never written back,
   * gone at the last close (a flush does not wait for them).
   */
  int blocksOfDeadFiles() {
    int n = 0;
    for (CachedFile f : files.values()) {
      if (f.dead && f.fileSlot >= 0) {
        n += f.blocks.size();
      }
    }
    return n;
  }

  /**
   * Needs index. The file unlinked while open that holds the most blocks and can leave the
   * cache now (no records name it any more), or null: what Writeback spills when writers wait.
   */
  CachedFile largestSpillable() {
    CachedFile best = null;
    for (CachedFile f : files.values()) {
      if (spillable(f) && (best == null || f.blocks.size() > best.blocks.size())) {
        best = f;
      }
    }
    return best;
  }

  /** Needs index. See {@link #largestSpillable}. */
  static boolean spillable(CachedFile f) {
    return f.dead && f.handles > 0 && f.fileSlot >= 0 && f.blocks.size() > 0
        && f.pendingRecords == 0 && !f.writeThrough && !f.owesBackingSync
        && !f.backingSyncRunning; // its backing descriptor is replaced
  }

  /** Needs index. A copy of every file known. */
  List<CachedFile> all() {
    return new ArrayList<>(files.values());
  }

  /** Needs index. Another file already has this backing file. */
  boolean taken(BackingStore.Stat st) {
    return files.containsKey(new CachedFile.Key(st.dev(), st.ino()));
  }

  /**
   * Inode numbers the mount showed for files created through it, by the backing file they got
   * later: a file keeps the st_ino it was first shown with until unmount (SQLite compares
   * st_ino of a path and of its descriptor). Written under index, read without it (every
   * getattr asks).
   */
  private final Map<CachedFile.Key, Long> shownInos =
      new java.util.concurrent.ConcurrentHashMap<>();
  /** Guarded by index: the last inode number handed to a file created in the cache. */
  private long lastShownIno = SHOWN_INO_BASE;
  /** Above any inode number a backing filesystem hands out in practice (2^62). */
  static final long SHOWN_INO_BASE = 1L << 62;
  /** st_dev of files not in the backing directory yet (no real device is -1). */
  static final long ABSENT_DEV = -1;

  /** Needs index. A file created in the cache: known by its shown inode number until placed. */
  void registerAbsent(CachedFile f) {
    f.shownIno = ++lastShownIno;
    f.dev = ABSENT_DEV;
    f.ino = f.shownIno;
    files.put(f.key(), f);
  }

  /** Needs index. An absent file now has a backing file: known by it from here on. */
  void placed(CachedFile f, long dev, long ino) {
    if (files.get(f.key()) == f) {
      files.remove(f.key());
    }
    f.dev = dev;
    f.ino = ino;
    files.put(f.key(), f);
    if (f.shownIno != 0) {
      shownInos.put(f.key(), f.shownIno);
    }
  }

  /** Whether any file shows an inode number other than its own. */
  boolean anyShownIno() {
    return !shownInos.isEmpty();
  }

  /** The backing file's name is going: its inode number may be reused by another file. */
  void forgetShownIno(long dev, long ino) {
    shownInos.remove(new CachedFile.Key(dev, ino));
  }

  /** The inode number the mount shows for a backing file, 0 for its own. */
  long shownIno(long dev, long ino) {
    if (shownInos.isEmpty()) {
      return 0;
    }
    Long shown = shownInos.get(new CachedFile.Key(dev, ino));
    return shown == null ? 0 : shown;
  }

  /** Needs index. Recovery: {@code fileSlot} holds {@code f}, or (f null) is free. */
  void recovered(int fileSlot, CachedFile f) {
    if (f == null) {
      freeFileSlots[freeFileSlotCount++] = fileSlot;
    } else {
      byFileSlot[fileSlot] = f;
      files.put(f.key(), f);
    }
  }

  /** Needs index. The file's backing file is now another one (lost+found). */
  void rekey(CachedFile f, long dev, long ino, String path) {
    if (files.get(f.key()) == f) {
      files.remove(f.key());
    }
    f.dev = dev;
    f.ino = ino;
    f.path = path;
    files.put(f.key(), f);
  }

  /** Needs index. */
  int size() {
    return files.size();
  }

  /** Needs index. */
  long heapBytes() {
    long bytes = 4L * freeFileSlots.length + 8L * byFileSlot.length;
    for (CachedFile f : files.values()) {
      bytes += f.blocks.heapBytes() + 128;
    }
    return bytes;
  }

  /** Closes every open backing file (the engine is stopping). */
  void closeAll() throws IOException {
    synchronized (index) {
      for (CachedFile f : files.values()) {
        if (f.file != null) {
          f.file.close();
          f.file = null;
        }
      }
    }
  }
}
