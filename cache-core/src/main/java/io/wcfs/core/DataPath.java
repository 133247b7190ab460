package io.wcfs.core;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The data path: write (copy-on-write of committed blocks, in place into uncommitted ones,
 * partial blocks filled from the newest version first), read (cache, else backing file, never
 * past the logical size), write-through for files the cache cannot record, and truncate. All
 * stores go into the open epoch under {@link Epochs#storing}; the file's lock orders them
 * against each other and against writeback. Punch hole and zero range ({@link Zeroing}) store
 * through {@link #storeChunk} and drop through {@link #dropBlocks} here.
 */
final class DataPath {
  private final CacheMemory mem;
  private final CacheLayout layout;
  private final CacheConfig config;
  private final int blockSize;
  /** A write is stored in chunks of at most this many blocks (one index section each). */
  private final int maxChunkBlocks;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final BackingSyncs backingSyncs;
  private final Writeback writeback;
  private final Counters.Io counters;
  /** Writers hold it shared: rename and unlink must not change a name they record. */
  private final ReentrantReadWriteLock namespaceLock;
  /** Two blocks per thread: a partial head and tail block's fill from the backing file. */
  private final ThreadLocal<NativeBuffer> scratch;

  DataPath(CacheMemory mem, CacheLayout layout, CacheConfig config, SlotTable table,
      FileRegistry files, Epochs epochs, BackingSyncs backingSyncs, Writeback writeback,
      Counters.Io counters, ReentrantReadWriteLock namespaceLock) {
    this.mem = mem;
    this.layout = layout;
    this.config = config;
    this.blockSize = layout.geometry().blockSize();
    this.maxChunkBlocks = (int) Math.max(1, Math.min(64, layout.geometry().nBlocks() / 4));
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.backingSyncs = backingSyncs;
    this.writeback = writeback;
    this.counters = counters;
    this.namespaceLock = namespaceLock;
    this.scratch = ThreadLocal.withInitial(() -> new NativeBuffer(2L * blockSize));
  }

  /** Blocks per chunk of a write, at most. */
  int maxChunkBlocks() {
    return maxChunkBlocks;
  }

  /** Writes {@code length} bytes from native memory at {@code src} at {@code offset}. */
  void write(CachedFile f, long offset, long src, long length) throws IOException {
    if (length == 0) {
      return;
    }
    epochs.checkError();
    long chunkBytes = (long) maxChunkBlocks * blockSize;
    long done = 0;
    while (done < length) {
      long pos = offset + done;
      long n = Math.min(length - done, chunkBytes - (pos % blockSize));
      writeChunk(f, pos, src + done, n);
      done += n;
    }
    maybeAutocommit();
  }

  private void writeChunk(CachedFile f, long offset, long src, long length) throws IOException {
    while (true) {
      namespaceLock.readLock().lock();
      f.lock.writeLock().lock();
      int need;
      try {
        if (f.writeThrough) {
          writeThrough(f, offset, src, length);
          return;
        }
        need = storeChunk(f, offset, src, length, null);
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

  /**
   * Stores {@code [offset, offset + length)} from {@code src}, at most one chunk, into the open
   * epoch; then runs {@code stored} (if not null), still in that epoch. Caller holds
   * namespaceLock shared and f.lock exclusively. Returns -1 once stored, else the slots it
   * was short of: the caller unlocks, waits for writeback to free them, and tries again.
   */
  int storeChunk(CachedFile f, long offset, long src, long length, Runnable stored)
      throws IOException {
    long first = offset / blockSize;
    long last = (offset + length - 1) / blockSize;
    int count = (int) (last - first + 1);
    NativeBuffer fill = scratch.get();
    // Partial head/tail blocks not cached: read the rest from the backing file now, before
    // entering the epoch, so a slow disk never holds up a commit.
    boolean headFromDisk = prefill(f, first, offset, length, fill.address());
    boolean tailFromDisk = last != first && prefill(f, last, offset, length,
        fill.address() + blockSize);
    epochs.storing().lock();
    try {
      int need = slotsNeeded(f, first, count);
      int[] reserved = reserve(f, need);
      if (reserved == null) {
        return need;
      }
      storeBlocks(f, offset, src, length, first, count, reserved,
          headFromDisk ? fill.address() : 0, tailFromDisk ? fill.address() + blockSize : 0);
      if (stored != null) {
        stored.run();
      }
      return -1;
    } finally {
      epochs.storing().unlock();
    }
  }

  private void writeThrough(CachedFile f, long offset, long src, long length) throws IOException {
    f.io.lock();
    try {
      files.backingFile(f).write(offset, src, length);
    } finally {
      f.io.unlock();
    }
    counters.writes.add((length + blockSize - 1) / blockSize);
    if (offset + length > f.size) {
      f.size = offset + length;
    }
    f.mtimeNanos = f.ctimeNanos = now();
    backingSyncs.queueBackingSync(f);
  }

  /** True when block {@code b} is written partly, is not cached, and was read from disk. */
  private boolean prefill(CachedFile f, long b, long offset, long length, long buf)
      throws IOException {
    long start = b * blockSize;
    boolean whole = offset <= start && offset + length >= start + blockSize;
    if (whole || f.blocks.get(b) >= 0) {
      return false;
    }
    long valid = Math.max(0, Math.min(blockSize, f.size - start));
    long got = valid > 0 && !f.absent ? files.backingFile(f).read(start, buf, valid) : 0;
    // Past the logical size a block reads as zeros, whatever the disk still holds there.
    NativeBuffer.zero(buf + got, blockSize - got);
    return true;
  }

  private int slotsNeeded(CachedFile f, long first, int count) {
    int need = 0;
    for (int i = 0; i < count; i++) {
      int s = f.blocks.get(first + i);
      if (s < 0 || !table.isUncommitted(s)) {
        need++;
      }
    }
    return need;
  }

  /** Takes {@code need} free slots (and a file slot if the file has none), or null if short. */
  private int[] reserve(CachedFile f, int need) throws IOException {
    synchronized (table) {
      boolean needFileSlot = f.fileSlot < 0;
      if (table.free() < need || (needFileSlot && !files.hasFreeSlot())) {
        return null;
      }
      if (needFileSlot) {
        files.takeSlot(f);
      }
      int[] out = new int[need];
      for (int i = 0; i < need; i++) {
        out[i] = table.reserve();
      }
      return out;
    }
  }

  /**
   * Copy, then assign the entry, for every block; then the file's size and mtime. All of it
   * belongs to the open epoch (the caller holds epochLock shared), so the commit that follows
   * flushes data, entries and file version before it stores seq_count.
   */
  private void storeBlocks(CachedFile f, long offset, long src, long length, long first,
      int count, int[] reserved, long headFill, long tailFill) throws IOException {
    int[] replaced = new int[reserved.length]; // old slot per reserved slot, or -1
    int next = 0;
    long end = offset + length;
    long epoch = epochs.openEpoch();
    try {
      for (int i = 0; i < count; i++) {
        long b = first + i;
        long start = b * blockSize;
        long from = Math.max(offset, start);
        long to = Math.min(end, start + blockSize);
        int old = f.blocks.get(b);
        if (old >= 0 && table.isUncommitted(old)) {
          mem.copyIn(layout.dataOffset(old) + (from - start), src + (from - offset), to - from);
          counters.writeHitsUncommitted.increment();
          continue;
        }
        int slot = reserved[next];
        replaced[next++] = old;
        long data = layout.dataOffset(slot);
        if (to - from < blockSize) {
          if (old >= 0) {
            // Staged through the first half of the scratch buffer; the head block's disk
            // fill lives there too, but the head is always the first block stored.
            mem.copyWithin(layout.dataOffset(old), data, blockSize, scratch.get().address());
          } else {
            mem.copyIn(data, b == first ? headFill : tailFill, blockSize);
          }
        }
        mem.copyIn(data + (from - start), src + (from - offset), to - from);
        layout.storeEntry(slot, CacheLayout.location(f.fileSlot, b), epoch);
        f.blocks.put(b, slot);
      }
      synchronized (table) { // once per chunk, not per block: this is the write hot path
        for (int k = 0; k < next; k++) {
          int slot = reserved[k];
          table.stored(slot);
          epochs.noteUncommitted(slot);
          if (replaced[k] >= 0) {
            epochs.replaced(replaced[k]);
            counters.writeHitsCommitted.increment();
          } else {
            counters.writesAllocated.increment();
          }
        }
      }
      counters.writes.add(count);
      if (end > f.size) {
        f.size = end;
      }
      f.mtimeNanos = f.ctimeNanos = now();
      storeFileMeta(f);
    } catch (IOException | RuntimeException e) {
      throw epochs.fail(e);
    }
  }

  /**
   * Records the file's size, mtime and path in its file slot for the open epoch: in place if the
   * newest version belongs to the open epoch, else into the other version (copy-on-write; the
   * older version is only overwritten once the newer one is committed: a version of the
   * sealed epoch whose commit is running is waited for). Caller holds f.lock and epochLock
   * shared.
   */
  void storeFileMeta(CachedFile f) throws IOException {
    storeFileMeta(f, false);
  }

  /**
   * Rewrites every field of f's slot (its place, attributes, marks) for the open epoch. If
   * its newest version is uncommitted, that is committed first, so that the rewrite goes to
   * the other version: rewriting it in place frees it first, and a daemon killed then would
   * lose writes that returned. Needs f.lock exclusively and no epochLock (it may commit).
   */
  void rewriteFileMeta(CachedFile f) throws IOException {
    if (f.versionSeq == epochs.openEpoch()) {
      epochs.commit();
    }
    epochs.storing().lock();
    try {
      storeFileMeta(f, true);
    } finally {
      epochs.storing().unlock();
    }
  }

  /** {@code whole}: rewrite every field, not just size and mtime (the unlinking mark). */
  void storeFileMeta(CachedFile f, boolean whole) throws IOException {
    long epoch = epochs.openEpoch();
    if (f.versionSeq != epoch && f.versionSeq >= epochs.committedSeq()) {
      // The newest version belongs to the sealed epoch being committed, and the other one is
      // the last committed version: it is overwritten only once the newer one is committed.
      epochs.awaitCommitted(f.versionSeq);
    }
    if (f.versionSeq == epoch && !whole) {
      layout.storeFileSizeMtime(f.fileSlot, f.version, f.size, f.mtimeNanos);
      return;
    }
    int v = f.versionSeq == epoch ? f.version : 1 - f.version; // an uncommitted one in place
    layout.storeFileVersion(f.fileSlot, v, epoch, f.ino, CacheLayout.devHint(f.dev), f.size,
        f.mtimeNanos, f.path == null ? "" : f.path, f.unlinking, f.mode, f.uid, f.gid,
        (f.absent ? CacheLayout.FLAG_ABSENT : 0) | (f.dead ? CacheLayout.FLAG_DEAD : 0));
    f.version = v;
    f.versionSeq = epoch;
    synchronized (table) {
      epochs.versionStored(f.fileSlot, v);
    }
  }

  void maybeAutocommit() throws IOException {
    boolean due;
    synchronized (table) {
      due = epochs.uncommittedCount() >= config.autocommitBlocks();
    }
    if (due) {
      epochs.commit();
    }
  }

  /**
   * Reads up to {@code length} bytes at {@code offset} into native memory at {@code dst}: cached
   * blocks from the cache, the rest from the backing file, never past the logical size.
   *
   * @return bytes read (0 at or past end of file)
   */
  int read(CachedFile f, long offset, long dst, int length) throws IOException {
    f.lock.readLock().lock();
    try {
      long size = f.size;
      if (offset >= size || length <= 0) {
        return 0;
      }
      int n = (int) Math.min(length, size - offset);
      long end = offset + n;
      long runStart = -1; // start of a run of uncached bytes, read from disk in one call
      long pos = offset;
      long blocksRead = 0;
      long hits = 0;
      while (pos < end) {
        long b = pos / blockSize;
        long blockEnd = Math.min(end, (b + 1) * blockSize);
        int slot = f.blocks.get(b);
        blocksRead++;
        if (slot >= 0) {
          if (runStart >= 0) {
            readBacking(f, runStart, dst + (runStart - offset), pos - runStart);
            runStart = -1;
          }
          mem.copyOut(layout.dataOffset(slot) + (pos - b * blockSize), dst + (pos - offset),
              blockEnd - pos);
          hits++;
        } else if (runStart < 0) {
          runStart = pos;
        }
        pos = blockEnd;
      }
      if (runStart >= 0) {
        readBacking(f, runStart, dst + (runStart - offset), end - runStart);
      }
      counters.reads.add(blocksRead);
      counters.readHits.add(hits);
      return n;
    } finally {
      f.lock.readLock().unlock();
    }
  }

  private void readBacking(CachedFile f, long pos, long dst, long length) throws IOException {
    if (f.absent) {
      NativeBuffer.zero(dst, length); // not in the backing directory yet: all it has is cached
      return;
    }
    long got = files.backingFile(f).read(pos, dst, length);
    if (got < length) {
      NativeBuffer.zero(dst + got, length - got); // a hole past the disk's end of file
    }
  }

  /**
   * Truncate, in this order: zero the tail of the last block, drop cached blocks
   * past the new size, record the size, commit; only then truncate the backing file (and fsync
   * it, so that no later extension can show its old bytes after a crash).
   */
  void truncate(CachedFile f, long size) throws IOException {
    if (size < 0) {
      throw new IllegalArgumentException("negative size " + size);
    }
    epochs.checkError();
    try (NativeBuffer zeros = new NativeBuffer(blockSize)) {
      for (int waitFor = 0; ; ) {
        if (waitFor > 0) {
          writeback.waitForFreeSlots(waitFor); // with no lock held: writeback may need this file's
        }
        int need = 0;
        namespaceLock.readLock().lock();
        f.lock.writeLock().lock();
        try {
          long oldSize = f.size;
          boolean shrinking = size < oldSize;
          boolean cached = f.fileSlot >= 0;
          if (cached) {
            // The tail zeroing, the dropped blocks and the new size belong to one epoch, under
            // the file's lock: no write can slip bytes past the new end in between, and no
            // commit can take the zeros without the size.
            long tail = size / blockSize;
            int tailSlot = shrinking && size % blockSize != 0 && !f.writeThrough
                ? f.blocks.get(tail) : -1;
            epochs.storing().lock();
            try {
              if (tailSlot >= 0) {
                need = table.isUncommitted(tailSlot) ? 0 : 1;
                int[] reserved = reserve(f, need);
                if (reserved == null) {
                  waitFor = need + 1;
                  continue; // unlocks, then waits for writeback to free a slot
                }
                long len = Math.min(blockSize - size % blockSize, oldSize - size);
                storeBlocks(f, size, zeros.address(), len, tail, 1, reserved, 0, 0);
              }
              dropBlocks(f, (size + blockSize - 1) / blockSize);
              f.size = size;
              f.mtimeNanos = f.ctimeNanos = now();
              storeFileMeta(f);
            } finally {
              epochs.storing().unlock();
            }
            epochs.commit();
          } else {
            f.size = size;
            f.mtimeNanos = f.ctimeNanos = now();
          }
          if (f.absent || (f.dead && f.file == null)) {
            return; // no backing file (yet, or any more): the recorded size is all there is
          }
          BackingStore.BackingFile file = files.backingFile(f);
          f.io.lock(); // after a writeback copy that took the old size
          try {
            file.truncate(size);
            if (shrinking && !f.dead) {
              // Durable before any later write can extend the file again: after a crash the
              // recovered file must not show the old bytes where the cut left a hole.
              file.sync();
            }
          } finally {
            f.io.unlock();
          }
          if (!cached && !shrinking) {
            // A size-only change the cache does not record: the next fsync makes it durable.
            backingSyncs.queueBackingSync(f);
          }
          return;
        } finally {
          f.lock.writeLock().unlock();
          namespaceLock.readLock().unlock();
        }
      }
    }
  }

  /** Supersedes every cached block of f from {@code fromBlock} on. Needs f.lock, epochLock. */
  void dropBlocks(CachedFile f, long fromBlock) {
    dropBlocks(f, fromBlock, Long.MAX_VALUE);
  }

  /** Supersedes the cached blocks of f in [fromBlock, toBlock). Needs f.lock, epochLock. */
  void dropBlocks(CachedFile f, long fromBlock, long toBlock) {
    long[] keys = f.blocks.keysSorted();
    synchronized (table) {
      for (long b : keys) {
        if (b >= fromBlock && b < toBlock) {
          epochs.supersede(f.blocks.remove(b));
        }
      }
    }
  }

  static long now() {
    java.time.Instant t = java.time.Instant.now();
    return t.getEpochSecond() * 1_000_000_000L + t.getNano();
  }

}
