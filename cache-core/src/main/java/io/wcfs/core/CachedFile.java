package io.wcfs.core;

import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A backing file known to the engine: open through the mount, or holding cached blocks, or
 * both. Locks: {@code lock} guards {@code blocks} and the logical size and mtime changes;
 * {@code fileSlot}, {@code version}, {@code versionSeq} and {@code handles} are changed under
 * {@code lock} and the engine's index monitor; {@code file} is guarded by this object's
 * monitor; {@code io} serializes changes to the backing file (see {@link WriteCache}).
 */
final class CachedFile {
  /** A backing file while this mount lasts: st_dev and st_ino (two filesystems may share ino). */
  record Key(long dev, long ino) {}

  /**
   * Where the backing file is in this mount (its key in {@code files}); recorded as a hint,
   * never as its identity. Changed, under index, only when the file moves to lost+found.
   */
  volatile long dev;
  volatile long ino;
  final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  /**
   * Serializes changes to the backing file's data and size (writeback, write-through,
   * truncate). Taken after lock, never before it. Writeback holds io, not lock, while it
   * copies to the disk, so writers to a file being written back do not wait for the disk;
   * committed slots are never overwritten in place, so the data it copies cannot change.
   */
  final ReentrantLock io = new ReentrantLock();
  /** Block index -> slot of the newest version. Guarded by lock (read for lookups). */
  final LongIntMap blocks = new LongIntMap();
  /**
   * Whole blocks a punch hole stored as zeros: block index -> that slot. Writeback also
   * punches them in the backing file while the slot still holds zeros. Only a hint, lost in a
   * crash (the zeros are then just written). Guarded by itself.
   */
  final LongIntMap punched = new LongIntMap();
  /**
   * Path relative to the backing root where the file is as far as applied journal records go,
   * as recorded in the file table; null while it is absent from the backing directory or once
   * its names are gone. The name the mount shows is the overlay's business ({@link Overlay}).
   */
  volatile String path;
  /**
   * Created through the mount, its CREATE record not applied yet: no backing file, attributes
   * kept here and in the file table. Changed under lock and index.
   */
  volatile boolean absent;
  /** Every name is gone (journaled): never written back; its slot waits for its records. */
  volatile boolean dead;
  /** The epoch of the record that removed its last name (committed iff below seq_count). */
  volatile long deathEpoch = Long.MAX_VALUE;
  /** Attributes of an absent file (a file in the backing directory has its own). */
  volatile int mode;
  volatile int uid;
  volatile int gid;
  volatile long atimeNanos;
  volatile long ctimeNanos;
  /** Journal records naming this file not yet applied and freed. Guarded by index. */
  int pendingRecords;
  /** The st_ino the mount shows for it, 0: the backing file's own. */
  volatile long shownIno;
  /** Logical size: what reads and getattr see. */
  volatile long size;
  volatile long mtimeNanos;
  /** File table slot, -1 while the file has nothing in the cache. */
  int fileSlot = -1;
  /** Which of the slot's two versions is the newest, and its seq. */
  int version;
  long versionSeq = CacheLayout.FREE;
  /** Writes go straight to the backing file: path too long for a slot, or name unlinked. */
  volatile boolean writeThrough;
  /** Recovery found the backing file longer than the committed size (a cut truncate). */
  boolean backingLonger;
  /** Its backing name is being unlinked or renamed over (recorded in the file slot). */
  boolean unlinking;
  /** Set once the file was found deleted or replaced in the backing directory. */
  volatile boolean replacedWarned;
  int handles;
  /** Queued for a backing fsync at the next commit (write-through, size-only change). */
  boolean owesBackingSync;
  /** A commit is fsyncing its backing file now: the descriptor must stay open. */
  boolean backingSyncRunning;
  BackingStore.BackingFile file;

  Key key() {
    return new Key(dev, ino);
  }

  CachedFile(long dev, long ino, String path, long size, long mtimeNanos) {
    this.dev = dev;
    this.ino = ino;
    this.path = path;
    this.size = size;
    this.mtimeNanos = mtimeNanos;
  }
}
