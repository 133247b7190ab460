package io.wcfs.core;

import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writeback's answer to backing files changed behind wcfs's back while they had cached
 * blocks: a warning for one deleted or replaced after wcfs opened it, and lost+found
 * ({@code BACKING/.wcfs-lost+found/}) for one whose path vanished before, so that its blocks
 * are written back somewhere a person finds them. Recovery names its lost+found files by
 * {@link #path} too. Holds no state of its own: the file's fields it changes are guarded as
 * {@link CachedFile} says.
 */
final class LostAndFound {
  /** Writeback's logger: these lines are writeback's, and log filters name it. */
  private static final Logger LOG = LoggerFactory.getLogger(Writeback.class);

  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Counters.Recovery counters;

  LostAndFound(BackingStore backing, SlotTable table, FileRegistry files,
      Counters.Recovery counters) {
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.counters = counters;
  }

  /**
   * Backing files are wcfs's to change while they have cached blocks. If one was deleted or
   * replaced behind its back, its blocks went to the inode wcfs had open, which the path no
   * longer shows: say so, naming the file, once per file.
   */
  void warnIfReplaced(CachedFile f) throws IOException {
    String path = f.path;
    if (path == null || f.replacedWarned || f.dead) { // dead: its name went through the mount
      return;
    }
    BackingStore.Stat st = backing.stat(path);
    if (st == null || st.ino() != f.ino) {
      f.replacedWarned = true;
      LOG.warn("{} was {} in the backing directory behind wcfs's back while it had cached"
          + " blocks; they were written to the original file (inode {}), which that path no"
          + " longer shows", path, st == null ? "deleted" : "replaced", f.ino);
    }
  }

  /** Where a file's blocks go when their path is gone: BACKING/.wcfs-lost+found/. */
  static String path(String path, int fileSlot, long seq) {
    String flat = path.replace('/', '#');
    String prefix = WriteCache.LOST_AND_FOUND + "/";
    String suffix = ".slot" + fileSlot + "-seq" + seq;
    // The file keeps its slot under this name, so the whole path must fit a file version:
    // counted in UTF-8 bytes (a name in Cyrillic or CJK is two or three per character), cut
    // from the front at a character boundary, keeping the end of the original path.
    int room = CacheLayout.MAX_PATH_BYTES - utf8Length(prefix) - utf8Length(suffix);
    int start = 0;
    while (utf8Length(flat.substring(start)) > room) {
      start += Character.charCount(flat.codePointAt(start));
    }
    return prefix + flat.substring(start) + suffix;
  }

  private static int utf8Length(String s) {
    return s.getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
  }

  /**
   * Gives a file whose path vanished behind wcfs's back a new one in lost+found: its blocks
   * are written back there (and its file slot keeps the original path, so a crash before that
   * lands them in lost+found again).
   */
  void moveToLostAndFound(CachedFile f, String why) throws IOException {
    f.lock.writeLock().lock();
    try {
      String from = f.path;
      if (from == null || from.startsWith(WriteCache.LOST_AND_FOUND + "/")) {
        throw new IOException(from + " vanished from the backing directory; its blocks stay in"
            + " the cache");
      }
      String to = path(from, f.fileSlot, f.versionSeq);
      backing.createFile(to);
      BackingStore.Stat st = backing.stat(to);
      if (st == null) {
        throw new IOException("could not create " + to + " in the backing directory");
      }
      LOG.error("{} {}; its {} cached blocks (size {}) go to {} instead", from, why,
          f.blocks.size(), f.size, to);
      counters.lostAndFound.increment();
      synchronized (table) {
        files.rekey(f, st.dev(), st.ino(), to);
      }
      if (f.file != null) {
        f.file.close();
        f.file = null;
      }
    } finally {
      f.lock.writeLock().unlock();
    }
  }
}
