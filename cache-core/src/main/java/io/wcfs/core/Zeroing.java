package io.wcfs.core;

import static io.wcfs.core.DataPath.now;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * fallocate: punch hole and zero range. A short range is stored as zeros through the data
 * path's chunk store ({@link DataPath#storeChunk}), a long one zeroed in the backing file and
 * its cached blocks dropped ({@link DataPath#dropBlocks}); see {@link #zero} for the order and
 * why a crash cannot bring back the old bytes. Takes the same locks as a write, in the same
 * order; holds no state of its own.
 */
final class Zeroing {
  private final int blockSize;
  /** Ranges touching at most this many blocks are stored in the cache (one write chunk). */
  private final int maxChunkBlocks;
  private final FileRegistry files;
  private final Epochs epochs;
  private final BackingSyncs backingSyncs;
  private final Writeback writeback;
  private final DataPath data;
  /** Held shared, as writers hold it: rename and unlink must not change a name it records. */
  private final ReentrantReadWriteLock namespaceLock;

  Zeroing(CacheLayout layout, FileRegistry files, Epochs epochs, BackingSyncs backingSyncs,
      Writeback writeback, DataPath data, ReentrantReadWriteLock namespaceLock) {
    this.blockSize = layout.geometry().blockSize();
    this.maxChunkBlocks = data.maxChunkBlocks();
    this.files = files;
    this.epochs = epochs;
    this.backingSyncs = backingSyncs;
    this.writeback = writeback;
    this.data = data;
    this.namespaceLock = namespaceLock;
  }

  /**
   * {@code FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE}: {@code [offset, offset + length)} reads
   * as zeros, the size stays. See {@link #zero} for how, and why a crash cannot bring back the
   * old bytes.
   */
  void punchHole(CachedFile f, long offset, long length) throws IOException {
    zero(f, offset, length, true);
  }

  /**
   * {@code FALLOC_FL_ZERO_RANGE}: as {@link #punchHole} but the backing file keeps the range
   * allocated; without {@code keepSize} a range past the end extends the file.
   */
  void zeroRange(CachedFile f, long offset, long length, boolean keepSize)
      throws IOException {
    checkRange(offset, length);
    long oldSize = f.size;
    if (!keepSize && offset + length > oldSize) {
      data.truncate(f, offset + length); // the part past the old end reads as zeros already
      if (offset >= oldSize) {
        return;
      }
      length = oldSize - offset;
    }
    zero(f, offset, length, false);
  }

  private static void checkRange(long offset, long length) {
    if (offset < 0 || length <= 0 || offset + length < 0) {
      throw new IllegalArgumentException("invalid range: offset " + offset + ", length "
          + length);
    }
  }

  /**
   * Zeroes {@code [offset, offset + length)} up to the file's size, ordered with the file's
   * other changes and durable by the rules of data:
   * <ul>
   *   <li>A range of at most one write chunk is stored as zero blocks in the cache, in one
   *       epoch under the file's lock, exactly as a write of zeros (partial blocks filled from
   *       their newest version): until it is written back the cache holds the zeros, so a crash
   *       after the commit cannot show the backing file's old bytes. A punch also marks its
   *       whole blocks, and writeback deallocates them in the backing file with the batch.
   *   <li>A longer range is zeroed in the backing file itself at once and made durable (fsync)
   *       while the file's lock and I/O lock keep writeback out; only then are the cached blocks
   *       in it dropped, in one epoch, and that committed. A crash in between finds the cached
   *       blocks still there: the range as before the call, which had not returned. Partial
   *       head and tail blocks go the first way.
   *   <li>A write-through file gets the call on its backing file, made durable by the next
   *       commit like its writes.
   * </ul>
   */
  private void zero(CachedFile f, long offset, long length, boolean punch) throws IOException {
    checkRange(offset, length);
    epochs.checkError();
    long end = Math.min(offset + length, f.size); // both keep the size here
    if (end <= offset) {
      return;
    }
    if (f.writeThrough) {
      zeroWriteThrough(f, offset, end, punch);
      return;
    }
    long firstWhole = (offset + blockSize - 1) / blockSize;
    long endWhole = end / blockSize;
    long touched = (end + blockSize - 1) / blockSize - offset / blockSize;
    if (touched <= maxChunkBlocks) {
      zeroInCache(f, offset, end, punch);
    } else {
      if (firstWhole * blockSize > offset) {
        zeroInCache(f, offset, firstWhole * blockSize, false);
      }
      if (endWhole * blockSize < end) {
        zeroInCache(f, endWhole * blockSize, end, false);
      }
      if (endWhole > firstWhole) {
        zeroInBacking(f, firstWhole, endWhole, punch);
      }
    }
    data.maybeAutocommit();
  }

  /** Stores zeros over [from, to), cut at the size, as one chunk of a write (storeChunk). */
  private void zeroInCache(CachedFile f, long from, long to, boolean punch) throws IOException {
    try (NativeBuffer zeros = new NativeBuffer(to - from)) { // at most one chunk
      NativeBuffer.zero(zeros.address(), zeros.size());
      while (true) {
        int need;
        namespaceLock.readLock().lock();
        f.lock.writeLock().lock();
        try {
          long end = Math.min(to, f.size);
          if (end <= from) {
            return;
          }
          if (f.writeThrough) {
            zeroWriteThrough(f, from, end, punch);
            return;
          }
          need = data.storeChunk(f, from, zeros.address(), end - from,
              punch ? () -> markPunched(f, from, end) : null);
          if (need < 0) {
            return;
          }
        } finally {
          f.lock.writeLock().unlock();
          namespaceLock.readLock().unlock();
        }
        writeback.waitForFreeSlots(need + 1);
      }
    }
  }

  /**
   * Zeroes whole blocks [first, end) in the backing file and fsyncs it, then drops the cached
   * blocks in the range in one epoch and commits (see {@link #zero}).
   */
  private void zeroInBacking(CachedFile f, long first, long end, boolean punch)
      throws IOException {
    namespaceLock.readLock().lock();
    f.lock.writeLock().lock();
    try {
      if (f.writeThrough) {
        zeroWriteThrough(f, first * blockSize, end * blockSize, punch);
        return;
      }
      if (!f.absent) { // else no backing file yet: its uncached blocks are zeros already
        BackingStore.BackingFile file = files.backingFile(f);
        f.io.lock(); // after writeback copies that took blocks of the range
        try {
          file.zeroRange(first * blockSize, (end - first) * blockSize, punch);
          file.sync(); // durable before any cached block of the range is freed
        } finally {
          f.io.unlock();
        }
      }
      f.mtimeNanos = f.ctimeNanos = now();
      if (f.fileSlot >= 0) {
        epochs.storing().lock();
        try {
          data.dropBlocks(f, first, end);
          data.storeFileMeta(f);
        } finally {
          epochs.storing().unlock();
        }
        epochs.commit();
      }
    } finally {
      f.lock.writeLock().unlock();
      namespaceLock.readLock().unlock();
    }
  }

  /**
   * Marks the whole blocks of [from, end) a punch just stored as zeros, for writeback to
   * deallocate in the backing file too ({@link BackingCopier}). Runs in the epoch of the store.
   */
  private void markPunched(CachedFile f, long from, long end) {
    synchronized (f.punched) {
      if (f.punched.size() > 65536) { // a hint: bounded, at the price of zeros
        for (long b : f.punched.keysSorted()) {
          f.punched.remove(b);
        }
      }
      for (long b = (from + blockSize - 1) / blockSize; b < end / blockSize; b++) {
        f.punched.put(b, f.blocks.get(b));
      }
    }
  }

  private void zeroWriteThrough(CachedFile f, long from, long to, boolean punch)
      throws IOException {
    f.io.lock();
    try {
      files.backingFile(f).zeroRange(from, to - from, punch);
    } finally {
      f.io.unlock();
    }
    f.mtimeNanos = f.ctimeNanos = now();
    backingSyncs.queueBackingSync(f);
  }
}
