package io.wcfs.core;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The write cache: dm-writecache's engine over files. Writes land in cache blocks, {@link
 * #commit} makes them durable with one flush/commit sequence of the cache memory, and a writeback
 * thread copies committed blocks to the backing files, making them durable there before freeing
 * the blocks.
 *
 * <h2>Persistence rules</h2>
 *
 * <ul>
 *   <li>A committed block is never overwritten in place: a write to it goes to a free slot
 *       (copy-on-write), and the old slot is freed after the new one commits.
 *   <li>An entry or file version is committed iff its seq is below the superblock's seq_count.
 *   <li>A slot is freed (seq = -1, flushed, committed) before it is reused, and a file slot only
 *       after every entry naming it is free.
 *   <li>Writeback frees a slot only after the backing file holding its data was fsync'd.
 * </ul>
 *
 * <h2>Locks</h2>
 *
 * Order: {@code namespaceLock} -> {@link CachedFile#lock} -> {@code writeThroughLock} -> {@code
 * commitLock} -> {@code epochLock} -> {@code table} (the index monitor, {@link SlotTable}).
 * {@link CachedFile#io} is taken after the file's lock, and only the file's monitor (its open
 * backing file) under it; under {@code writeThroughLock} other files' locks are only tried.
 * Writeback's copies hold only {@code io}: a slow backing disk stalls neither commits nor the
 * writers of the file being written back. Backing I/O under other locks, each on purpose:
 * rename and unlink hold {@code namespaceLock} (a name must not change under a writer that
 * records it); backing fsyncs of write-through files hold {@code writeThroughLock} (an fsync
 * must not return before an earlier one finished); the directory fsyncs of a commit hold
 * {@code epochLock} exclusively (no write may record a name newer than the directories
 * synced).
 */
public final class WriteCache implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(WriteCache.class);

  /** Writeback batches hold this many writeback_jobs buffers' worth of blocks per fsync. */
  private static final int WRITEBACK_BATCH_JOBS = 16;
  /** Where blocks whose path is gone are written, relative to the backing root. */
  static final String LOST_AND_FOUND = ".wcfs-lost+found";

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final CacheConfig config;
  private final int blockSize;
  private final int nBlocks;
  private final int maxChunkBlocks;

  /** Rename and unlink exclude writers that record a path in the file table. */
  private final ReentrantReadWriteLock namespaceLock = new ReentrantReadWriteLock();
  /**
   * The slot table, and the engine's index monitor ("index" in comments): it guards the table,
   * the registry's and the epochs' index fields and the writeback state below (one monitor,
   * because a write's slots, the epoch's lists and the file table change together).
   */
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Counters counters = new Counters();
  private final Writeback writeback;
  private final ThreadLocal<NativeBuffer> scratch;

  private WriteCache(CacheMemory mem, CacheLayout layout, BackingStore backing, CacheConfig cfg) {
    this.mem = mem;
    this.layout = layout;
    this.backing = backing;
    this.blockSize = layout.geometry().blockSize();
    this.config = cfg.blockSize() == blockSize ? cfg : cfg.withBlockSize(blockSize);
    long n = layout.geometry().nBlocks();
    if (n > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException("cache of " + n + " blocks is too large; use larger blocks");
    }
    this.nBlocks = (int) n;
    this.maxChunkBlocks = Math.max(1, Math.min(64, nBlocks / 4));
    this.table = new SlotTable(nBlocks);
    this.files = new FileRegistry(table, backing, layout.geometry().fileSlots());
    this.epochs = new Epochs(mem, layout, backing, config, table, files, counters);
    this.scratch = ThreadLocal.withInitial(() -> new NativeBuffer(2L * blockSize));
    this.writeback = new Writeback(mem, layout, backing, config, table, files, epochs,
        counters);
  }

  /**
   * Opens a formatted cache, recovers it and starts writeback. The memory belongs to the cache
   * from here on and is closed by {@link #close}.
   */
  public static WriteCache open(CacheMemory mem, BackingStore backing, CacheConfig config)
      throws IOException {
    WriteCache cache = openManual(mem, backing, config);
    cache.writeback.start();
    return cache;
  }

  /**
   * Opens and recovers without starting the writeback thread: writeback then happens only in
   * {@link #writebackStep} and inline when writers find the cache full. Deterministic, for tests.
   */
  static WriteCache openManual(CacheMemory mem, BackingStore backing, CacheConfig config)
      throws IOException {
    CacheLayout layout = CacheLayout.open(mem, backing.identity());
    WriteCache cache = new WriteCache(mem, layout, backing, config);
    new Recovery(mem, layout, backing, cache.table, cache.files, cache.epochs, cache.writeback,
        cache.counters).run();
    return cache;
  }


  /** Formats {@code mem} for {@code backing} (a zero-filled or fresh file) and opens it. */
  public static WriteCache format(CacheMemory mem, BackingStore backing, CacheConfig config)
      throws IOException {
    CacheLayout.format(mem, config.blockSize(), backing.identity());
    return open(mem, backing, config);
  }

  public CacheConfig config() {
    return config;
  }

  public CacheLayout.Geometry geometry() {
    return layout.geometry();
  }

  // =============================================================================================
  // Files
  // =============================================================================================

  /** An open file: what the filesystem holds per file handle. */
  public static final class OpenFile {
    private final CachedFile file;
    private boolean closed;

    OpenFile(CachedFile file) {
      this.file = file;
    }

    public long ino() {
      return file.ino;
    }
  }

  /** Opens an existing regular backing file. */
  public OpenFile open(String path) throws IOException {
    return new OpenFile(files.open(path));
  }

  public void close(OpenFile h) throws IOException {
    CachedFile f = h.file;
    f.lock.writeLock().lock();
    try {
      synchronized (table) {
        if (h.closed) {
          return;
        }
        h.closed = true;
        f.handles--;
        files.forgetIfUnused(f);
      }
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /** The logical size of a file the engine knows, or -1: getattr must show it, not the disk's. */
  public long cachedSize(long dev, long ino) {
    CachedFile f = files.known(dev, ino);
    return f == null ? -1 : f.size;
  }

  /** The mtime of a file the engine knows (nanoseconds), or -1. */
  public long cachedMtime(long dev, long ino) {
    CachedFile f = files.known(dev, ino);
    return f == null ? -1 : f.mtimeNanos;
  }

  public long size(OpenFile h) {
    return h.file.size;
  }

  // =============================================================================================
  // Write
  // =============================================================================================

  /** Writes {@code length} bytes from native memory at {@code src} at {@code offset}. */
  public void write(OpenFile h, long offset, long src, long length) throws IOException {
    if (length == 0) {
      return;
    }
    epochs.checkError();
    CachedFile f = h.file;
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
    long first = offset / blockSize;
    long last = (offset + length - 1) / blockSize;
    int count = (int) (last - first + 1);
    while (true) {
      namespaceLock.readLock().lock();
      f.lock.writeLock().lock();
      int need;
      try {
        if (f.writeThrough) {
          writeThrough(f, offset, src, length);
          return;
        }
        NativeBuffer fill = scratch.get();
        // Partial head/tail blocks not cached: read the rest from the backing file now, before
        // entering the epoch, so a slow disk never holds up a commit.
        boolean headFromDisk = prefill(f, first, offset, length, fill.address());
        boolean tailFromDisk = last != first && prefill(f, last, offset, length,
            fill.address() + blockSize);
        epochs.storing().lock();
        try {
          need = slotsNeeded(f, first, count);
          int[] reserved = reserve(f, need);
          if (reserved != null) {
            storeBlocks(f, offset, src, length, first, count, reserved,
                headFromDisk ? fill.address() : 0, tailFromDisk ? fill.address() + blockSize : 0);
            return;
          }
        } finally {
          epochs.storing().unlock();
        }
      } finally {
        f.lock.writeLock().unlock();
        namespaceLock.readLock().unlock();
      }
      writeback.waitForFreeSlots(need + 1);
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
    f.mtimeNanos = now();
    epochs.queueBackingSync(f);
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
    long got = valid > 0 ? files.backingFile(f).read(start, buf, valid) : 0;
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
            epochs.supersede(replaced[k]);
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
      f.mtimeNanos = now();
      storeFileMeta(f);
    } catch (IOException | RuntimeException e) {
      throw epochs.fail(e);
    }
  }

  /**
   * Records the file's size, mtime and path in its file slot for the open epoch: in place if the
   * newest version belongs to the open epoch, else into the other version (copy-on-write; the
   * older version is only overwritten once the newer one is committed, which a commit holding
   * epochLock exclusively guarantees). Caller holds f.lock and epochLock shared.
   */
  private void storeFileMeta(CachedFile f) throws IOException {
    storeFileMeta(f, false);
  }

  /** {@code whole}: rewrite every field, not just size and mtime (the unlinking mark). */
  private void storeFileMeta(CachedFile f, boolean whole) throws IOException {
    long epoch = epochs.openEpoch();
    if (f.versionSeq == epoch && !whole) {
      layout.storeFileSizeMtime(f.fileSlot, f.version, f.size, f.mtimeNanos);
      return;
    }
    int v = f.versionSeq == epoch ? f.version : 1 - f.version; // an uncommitted one in place
    layout.storeFileVersion(f.fileSlot, v, epoch, f.ino, CacheLayout.devHint(f.dev), f.size,
        f.mtimeNanos, f.path, f.unlinking);
    f.version = v;
    f.versionSeq = epoch;
    synchronized (table) {
      epochs.versionStored(f.fileSlot, v);
    }
  }

  private void maybeAutocommit() throws IOException {
    boolean due;
    synchronized (table) {
      due = epochs.uncommittedCount() >= config.autocommitBlocks();
    }
    if (due) {
      epochs.commit();
    }
  }

  // =============================================================================================
  // Read
  // =============================================================================================

  /**
   * Reads up to {@code length} bytes at {@code offset} into native memory at {@code dst}: cached
   * blocks from the cache, the rest from the backing file, never past the logical size.
   *
   * @return bytes read (0 at or past end of file)
   */
  public int read(OpenFile h, long offset, long dst, int length) throws IOException {
    CachedFile f = h.file;
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
    long got = files.backingFile(f).read(pos, dst, length);
    if (got < length) {
      NativeBuffer.zero(dst + got, length - got); // a hole past the disk's end of file
    }
  }

  // =============================================================================================
  // Commit
  // =============================================================================================

  /**
   * fsync: makes every write that returned before this call durable, and every name changed
   * before it. Concurrent callers share one commit (group commit).
   */
  public void commit() throws IOException {
    epochs.commit();
  }

  /**
   * Records that the entries of {@code path}'s parent directory changed (fs calls it after
   * create, mkdir, mknod, symlink, link, rmdir): the next commit makes them durable.
   */
  public void namespaceChanged(String path) {
    epochs.namespaceChanged(path);
  }

  /** The latched cache error, or null. */
  public IOException error() {
    return epochs.error();
  }

  // =============================================================================================
  // Namespace operations
  // =============================================================================================

  /** truncate/ftruncate through the cache; the file need not be open. */
  public void truncate(String path, long size) throws IOException {
    OpenFile h = open(path);
    try {
      truncate(h, size);
    } finally {
      close(h);
    }
  }

  /**
   * Truncate, ordered as DESIGN.md says: zero the tail of the last block, drop cached blocks
   * past the new size, record the size, commit; only then truncate the backing file (and fsync
   * it, so that no later extension can show its old bytes after a crash).
   */
  public void truncate(OpenFile h, long size) throws IOException {
    if (size < 0) {
      throw new IllegalArgumentException("negative size " + size);
    }
    epochs.checkError();
    CachedFile f = h.file;
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
              f.mtimeNanos = now();
              storeFileMeta(f);
            } finally {
              epochs.storing().unlock();
            }
            epochs.commit();
          } else {
            f.size = size;
            f.mtimeNanos = now();
          }
          BackingStore.BackingFile file = files.backingFile(f);
          f.io.lock(); // after a writeback copy that took the old size
          try {
            file.truncate(size);
            if (shrinking) {
              // Durable before any later write can extend the file again: after a crash the
              // recovered file must not show the old bytes where the cut left a hole.
              file.sync();
            }
          } finally {
            f.io.unlock();
          }
          if (!cached && !shrinking) {
            // A size-only change the cache does not record: the next fsync makes it durable.
            epochs.queueBackingSync(f);
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
  private void dropBlocks(CachedFile f, long fromBlock) {
    long[] keys = f.blocks.keysSorted();
    synchronized (table) {
      for (long b : keys) {
        if (b >= fromBlock) {
          epochs.supersede(f.blocks.remove(b));
        }
      }
    }
  }

  /** Sets a file's mtime (utimens); cached files keep it for writeback. */
  public void setMtime(String path, long mtimeNanos) throws IOException {
    BackingStore.Stat st = backing.stat(path);
    CachedFile f = st == null ? null : files.known(st);
    if (f == null) {
      return;
    }
    f.lock.writeLock().lock();
    try {
      f.mtimeNanos = mtimeNanos;
      if (f.fileSlot >= 0) {
        epochs.storing().lock();
        try {
          storeFileMeta(f);
        } finally {
          epochs.storing().unlock();
        }
      }
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /**
   * unlink: the name goes first, then the cached blocks, freed by a commit that first fsyncs
   * the directory (so a power loss cannot bring the name back without its blocks; a crash
   * between the two puts the blocks in lost+found, see recovery). A file with other links is
   * written back first, so the data survives under them.
   */
  public void unlink(String path) throws IOException {
    namespaceLock.writeLock().lock();
    try {
      BackingStore.Stat st = backing.stat(path);
      CachedFile f = st == null ? null : files.known(st);
      if (f == null) {
        backing.unlink(path);
        epochs.namespaceChanged(path);
        return;
      }
      if (st.nlink() > 1) {
        writeback.writeBackFile(f);
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
      discard(f);
    } finally {
      namespaceLock.writeLock().unlock();
    }
  }

  /**
   * rename: files under the old name that hold blocks are written back first, so a crash can
   * never write their data to a path that no longer names them; a replaced target is dropped
   * after the rename.
   */
  public void rename(String from, String to) throws IOException {
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
        if (victim != null && dst.nlink() > 1) {
          writeback.writeBackFile(victim);
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
      epochs.namespaceChanged(from);
      epochs.namespaceChanged(to);
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
        storeFileMeta(f, true);
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
        dropBlocks(f, 0);
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

  /**
   * Commits, then writes everything back and waits until the cache is empty (wcfs flush,
   * unmount). Throws if writeback keeps failing past {@code timeoutMs}, leaving data cached.
   */
  public void flush(long timeoutMs) throws IOException {
    writeback.flush(timeoutMs);
  }

  /** One writeback batch now, whatever the watermarks (tests without the thread). */
  int writebackStep() throws IOException {
    return writeback.step();
  }

  // =============================================================================================
  // Stats, close
  // =============================================================================================

  private static long now() {
    java.time.Instant t = java.time.Instant.now();
    return t.getEpochSecond() * 1_000_000_000L + t.getNano();
  }

  public CacheStats stats() {
    Counters.Live live;
    synchronized (table) {
      long age;
      try {
        age = TimeUnit.NANOSECONDS.toMillis(epochs.oldestDirtyAgeNanos(System.nanoTime()));
      } catch (IOException e) {
        age = -1;
      }
      IOException error = epochs.error();
      live = new Counters.Live(error == null ? null : error.getMessage(), nBlocks, table.free(),
          writeback.inFlight(), table.dirty(), epochs.uncommittedCount(), age, table.writersWaiting(), blockSize,
          mem.describe());
    }
    return counters.snapshot(live);
  }

  /** Heap held by the in-memory index (for the memory benchmark). */
  public long indexHeapBytes() {
    synchronized (table) {
      return table.heapBytes() + files.heapBytes();
    }
  }

  /** Commits and writes everything back (bounded by {@code timeoutMs}), then stops. */
  public void close(long timeoutMs) throws IOException {
    IOException failure = null;
    try {
      if (epochs.error() == null) {
        flush(timeoutMs);
      }
    } catch (IOException e) {
      failure = e;
    }
    writeback.stop(TimeUnit.SECONDS.toMillis(30));
    closeBackingFiles();
    mem.close();
    if (failure != null) {
      throw failure;
    }
  }

  /**
   * Stops without writing back (as a crash would, but with the memory unmapped cleanly): for
   * tests and for shutting down after a fatal error. Committed data stays in the cache.
   */
  public void abandon() throws IOException {
    epochs.abandon();
    writeback.stop(TimeUnit.SECONDS.toMillis(10));
    closeBackingFiles();
  }

  private void closeBackingFiles() throws IOException {
    writeback.close();
    files.closeAll();
  }

  @Override
  public void close() throws IOException {
    close(TimeUnit.MINUTES.toMillis(10));
  }
}
