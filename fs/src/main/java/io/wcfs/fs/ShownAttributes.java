package io.wcfs.fs;

import io.wcfs.core.BackingStore;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.time.Instant;
import jnr.ffi.Struct;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The attributes the mount shows: the namespace journal's overlay first (a name created,
 * moved or removed that writeback has not applied yet), else the backing directory, with a
 * cached file's size, mtime and first-shown inode number over the backing values.
 *
 * <p>It reads the backing directory through {@link BackingStore#statInto}, which fills the
 * kernel's struct stat in place: getattr, the most frequent request, costs one fstatat and no
 * copy ({@link BackingStore.Stat} holds only what the engine needs: no mode, owner, times or
 * device). It changes nothing.
 */
final class ShownAttributes {
  private static final long UTIME_NOW = (1L << 30) - 1;
  private static final long UTIME_OMIT = (1L << 30) - 2;

  private final WriteCache cache;
  private final BackingStore backing;
  /** st_dev of the backing root: what files not in the backing directory yet show. */
  private final long rootDev;

  ShownAttributes(WriteCache cache, BackingStore backing) {
    this.cache = cache;
    this.backing = backing;
    long dev;
    try {
      BackingStore.Stat root = backing.stat("");
      dev = root == null ? 0 : root.dev();
    } catch (IOException e) {
      dev = 0;
    }
    this.rootDev = dev;
  }

  long rootDev() {
    return rootDev;
  }

  private static long address(Struct s) {
    return Struct.getMemory(s).address();
  }

  /**
   * lstat as the mount shows it: the namespace journal's overlay first (a name removed, or a
   * file created or renamed whose record writeback has not applied yet), else the backing
   * directory, with a cached file's size, mtime and first-shown inode number.
   */
  int stat(String path, FileStat stat) throws IOException {
    Integer rc = cache.withShown(WcfsFileSystem.rel(path), shown -> statOverlaid(shown, stat));
    if (rc != null) {
      return rc;
    }
    String rel = WcfsFileSystem.rel(path);
    int r = backing.statInto(rel, address(stat));
    if (r == 0) {
      overlayCachedAttributes(stat);
      if ((stat.st_mode.intValue() & FileStat.S_IFMT) == FileStat.S_IFDIR) {
        showEntriesChanged(stat, cache.entriesChangedNanos(rel, nanosOf(stat.st_mtim)));
      }
    }
    return r;
  }

  /**
   * A directory whose entries a journaled name change changed: its mtime and ctime are that
   * change's, as in a plain directory (pjdfstest's unlink/00.t), until the backing directory's
   * own times are later (writeback applied it).
   */
  private static void showEntriesChanged(FileStat stat, long nanos) {
    if (nanos == 0) {
      return;
    }
    if (nanos > nanosOf(stat.st_mtim)) {
      setTime(stat.st_mtim, nanos);
    }
    if (nanos > nanosOf(stat.st_ctim)) {
      setTime(stat.st_ctim, nanos);
    }
  }

  private static long nanosOf(Timespec t) {
    return t.tv_sec.get() * 1_000_000_000L + t.tv_nsec.longValue();
  }

  /** statShown for a name the overlay decides; runs under the file's lock (withShown). */
  private int statOverlaid(WriteCache.Shown shown, FileStat stat) throws IOException {
    if (shown.backingPath() != null) {
      int rc = backing.statInto(shown.backingPath(), address(stat));
      if (rc == 0) {
        // The overlay's file itself, not what the engine finds by (st_dev, st_ino), a hint.
        showCached(stat, shown.size(), shown.mtimeNanos(), shown.ctimeNanos());
        stat.st_ino.set(shown.ino());
      }
      return rc;
    }
    fillFromEngine(shown, stat);
    return 0;
  }

  /**
   * fstat of an open file libfuse2 has no path for (its last name went while it was open,
   * -o hard_remove): the file's own attributes, link count 0.
   */
  int statOpen(WriteCache.OpenFile h, FileStat stat) throws IOException {
    WriteCache.Shown shown = cache.shown(h);
    int rc = cache.fstat(h, address(stat));
    if (rc == 0) {
      showCached(stat, shown.size(), shown.mtimeNanos(), shown.ctimeNanos());
      stat.st_ino.set(shown.ino());
    } else if (rc == -2 && shown.backingPath() == null) { // ENOENT: not in the backing directory
      fillFromEngine(shown, stat);
    } else {
      return rc;
    }
    if (cache.isUnlinked(h)) {
      stat.st_nlink.set(0);
    }
    return 0;
  }

  /** A file not in the backing directory yet: what the engine keeps is all there is. */
  private void fillFromEngine(WriteCache.Shown shown, FileStat stat) {
    stat.st_dev.set(rootDev);
    stat.st_ino.set(shown.ino());
    stat.st_mode.set(FileStat.S_IFREG | (shown.mode() & 07777));
    stat.st_nlink.set(1);
    stat.st_uid.set(shown.uid());
    stat.st_gid.set(shown.gid());
    stat.st_size.set(shown.size());
    stat.st_blksize.set(4096);
    stat.st_blocks.set((shown.size() + 511) / 512);
    setTime(stat.st_atim, shown.atimeNanos());
    setTime(stat.st_mtim, shown.mtimeNanos());
    setTime(stat.st_ctim, shown.ctimeNanos());
  }

  private static void setTime(Timespec t, long nanos) {
    t.tv_sec.set(Math.floorDiv(nanos, 1_000_000_000L));
    t.tv_nsec.set(Math.floorMod(nanos, 1_000_000_000L));
  }

  /**
   * lstat of the backing node at {@code path} (a path below the mount), whatever the journal
   * shows there: after a change made in the backing directory.
   */
  LibC.FileStatus backingStatus(String path) throws IOException {
    return backingStatusAt(WcfsFileSystem.rel(path));
  }

  /** lstat of the backing node at {@code rel}, relative to the backing root. */
  private LibC.FileStatus backingStatusAt(String rel) throws IOException {
    try (NativeBuffer buf = new NativeBuffer(LibC.STAT_SIZE)) {
      LibC.check(backing.statInto(rel, buf.address()), "stat " + rel);
      return LibC.decodeStat(buf.address());
    }
  }

  /** The mode the mount shows for {@code path}. */
  int mode(String path) throws IOException {
    Integer mode = cache.withShown(WcfsFileSystem.rel(path), shown -> shown.backingPath() == null
        ? FileStat.S_IFREG | shown.mode()
        : backingStatusAt(shown.backingPath()).mode());
    return mode != null ? mode : backingStatus(path).mode();
  }


  /** The logical size and times of a file with cached writes, not the stale backing values. */
  private void overlayCachedAttributes(FileStat stat) {
    if ((stat.st_mode.intValue() & FileStat.S_IFMT) != FileStat.S_IFREG) {
      return;
    }
    long dev = stat.st_dev.longValue();
    long ino = stat.st_ino.longValue();
    WriteCache.Shown cached = cache.cached(dev, ino);
    stat.st_ino.set(cache.shownIno(dev, ino));
    if (cached != null) {
      showCached(stat, cached.size(), cached.mtimeNanos(), cached.ctimeNanos());
    }
  }

  /**
   * The logical size and mtime of a file with cached writes, and its ctime if a write or
   * truncate in the cache changed it later than the backing file's (which changes only at
   * writeback).
   */
  private static void showCached(FileStat stat, long size, long mtimeNanos, long ctimeNanos) {
    stat.st_size.set(size);
    stat.st_blocks.set((size + 511) / 512);
    setTime(stat.st_mtim, mtimeNanos);
    if (ctimeNanos > nanosOf(stat.st_ctim)) {
      setTime(stat.st_ctim, ctimeNanos);
    }
  }


  /** A utimens time in nanoseconds; null for UTIME_OMIT. */
  static Long timeOf(Timespec t) {
    long nsec = t.tv_nsec.longValue();
    if (nsec == UTIME_OMIT) {
      return null;
    }
    if (nsec == UTIME_NOW) {
      Instant now = Instant.now();
      return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }
    return t.tv_sec.get() * 1_000_000_000L + nsec;
  }
}
