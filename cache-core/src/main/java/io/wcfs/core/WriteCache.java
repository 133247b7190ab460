package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantLock;
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
 * Order: {@code namespaceLock} -> {@link CachedFile#lock} -> {@code commitLock} -> {@code
 * epochLock} -> {@code index} (monitor). {@link CachedFile#io} is taken after the file's lock,
 * and only the file's monitor (its open backing file) under it. No lock but a file's own is
 * held across backing I/O, and writeback's copies hold only {@code io}: a slow backing disk
 * stalls neither commits nor the writers of the file being written back.
 */
public final class WriteCache implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(WriteCache.class);

  // Slot kinds (low bits of state[]); WB marks a slot whose data writeback is copying.
  private static final byte FREE = 0;
  private static final byte RESERVED = 1;
  private static final byte UNCOMMITTED = 2;
  private static final byte COMMITTED = 3;
  /** Replaced by a newer version or dropped; freed after the open epoch commits. */
  private static final byte SUPERSEDED = 4;
  /** Freed on the device, waiting for writeback to stop reading it before reuse. */
  private static final byte FREED_AFTER_WB = 5;
  private static final byte KIND = 0x0f;
  private static final byte WB = 0x10;
  /** Writeback batches hold this many writeback_jobs buffers' worth of blocks per fsync. */
  private static final int WRITEBACK_BATCH_JOBS = 16;
  /** A contiguous writeback run this long goes to the backing file with O_DIRECT. */
  private static final long SEQUENTIAL_CUTOFF = 1 << 20;
  /** Where blocks whose path is gone are written, relative to the backing root. */
  static final String LOST_AND_FOUND = ".wcfs-lost+found";
  /** Recovery sorts (seq, slot) pairs packed in one long. */
  private static final int SLOT_BITS = 31;

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final CacheConfig config;
  private final int blockSize;
  private final int nBlocks;
  private final int maxChunkBlocks;

  /** Rename and unlink exclude writers that record a path in the file table. */
  private final ReentrantReadWriteLock namespaceLock = new ReentrantReadWriteLock();
  /** Serializes commits; group commit: a waiter whose epoch was committed meanwhile returns. */
  private final ReentrantLock commitLock = new ReentrantLock();
  /**
   * Serializes the backing fsyncs of {@code writeThroughDirty}: without it, a second fsync
   * found the list empty and returned before the first one's backing fsync had finished.
   */
  private final ReentrantLock writeThroughLock = new ReentrantLock();
  /** Guarded by writeThroughLock: the last failed backing fsync, reported as described there. */
  private IOException writeThroughFailure;
  /** Guarded by writeThroughLock: commits whose ticket is at most this report the failure. */
  private long writeThroughFailureTicket;
  private final java.util.concurrent.atomic.AtomicLong commitTickets =
      new java.util.concurrent.atomic.AtomicLong();
  /** Writers hold it shared while storing into the open epoch; a commit holds it exclusively. */
  private final ReentrantReadWriteLock epochLock = new ReentrantReadWriteLock();
  /** Guards every field below up to the counters. */
  private final Object index = new Object();

  private final byte[] state;
  /** LRU of occupied slots in allocation order (oldest first); free slots chain via lruNext. */
  private final int[] lruPrev;
  private final int[] lruNext;
  private int lruHead = -1;
  private int lruTail = -1;
  private int freeHead = -1;
  private int freeCount;
  private int dirtyCount;
  private final int[] freeFileSlots;
  private int freeFileSlotCount;
  private final CachedFile[] byFileSlot;
  /** Files the engine knows, by the (st_dev, st_ino) of their backing file in this mount. */
  private final Map<FileKey, CachedFile> files = new HashMap<>();
  private IntList uncommitted = new IntList();
  private IntList dirtyVersions = new IntList();
  private IntList pendingFree = new IntList();
  private IntList pendingFileFree = new IntList();
  /**
   * Files whose backing file the next commit fsyncs: write-through files, and size-only
   * changes (truncate up, fallocate) of files with nothing in the cache.
   */
  private List<CachedFile> writeThroughDirty = new ArrayList<>();
  /**
   * Backing directories whose entries changed (create, rename, unlink, ...) since the last
   * commit. The next commit fsyncs them before its commit point, so that a committed file slot
   * never names a path the backing disk could still lose, and an unlinked or replaced file's
   * blocks are freed only once its name is durably gone.
   */
  private Set<String> dirtyDirectories = new HashSet<>();
  private long firstUncommittedNanos;
  /** (epoch, nanoTime of its commit), oldest first: the age of the oldest dirty block. */
  private final ArrayDeque<long[]> commitTimes = new ArrayDeque<>();
  private int blockedWriters;
  private int drainRequests;
  private boolean writebackActive;
  private boolean closing;
  private long writebackBackoffUntil;

  /** The epoch new writes belong to; written under epochLock exclusively. */
  private volatile long openEpoch;
  /** Persisted seq_count: epochs below it are committed. */
  private volatile long committedSeq;
  /** The first cache-memory error; sticky, as dm-writecache's writecache_error. */
  private volatile IOException error;

  private final LongAdder reads = new LongAdder();
  private final LongAdder readHits = new LongAdder();
  private final LongAdder writes = new LongAdder();
  private final LongAdder writeHitsUncommitted = new LongAdder();
  private final LongAdder writeHitsCommitted = new LongAdder();
  private final LongAdder writesAllocated = new LongAdder();
  private final LongAdder writesBlocked = new LongAdder();
  private final LongAdder flushes = new LongAdder();
  private final LongAdder writtenBack = new LongAdder();
  private final LongAdder writebackErrors = new LongAdder();
  /** Recovered files whose path now leads to another inode number (a remounted network fs). */
  private final LongAdder inodeHintMismatches = new LongAdder();
  /** Files whose blocks had no path left to go to and were put in lost+found. */
  private final LongAdder lostAndFound = new LongAdder();
  private volatile String lastWritebackError;
  private volatile int writebackInFlight;
  /** Needs index. Writeback is waiting for blocks to commit (commits then wake it). */
  private boolean writebackWantsCommitted;
  private final long[] commitLatencies = new long[4096];
  private long commitLatencyCount;
  private long commitLatencyMax;

  private final Thread writebackThread;
  /**
   * Writeback's iovec arrays and, for a memory the kernel cannot read directly, copy buffers
   * (writeback_jobs blocks each), kept for reuse: a fresh 4 MiB buffer per batch cost page
   * faults on every block, and made draining slower than the disk.
   */
  private final ConcurrentLinkedDeque<WritebackScratch> writebackScratch =
      new ConcurrentLinkedDeque<>();
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
    this.state = new byte[nBlocks];
    this.lruPrev = new int[nBlocks];
    this.lruNext = new int[nBlocks];
    int slots = layout.geometry().fileSlots();
    this.byFileSlot = new CachedFile[slots];
    this.freeFileSlots = new int[slots];
    this.scratch = ThreadLocal.withInitial(() -> new NativeBuffer(2L * blockSize));
    this.writebackThread = new Thread(this::writebackLoop, "wcfs-writeback");
    this.writebackThread.setDaemon(true);
  }

  /**
   * Opens a formatted cache, recovers it and starts writeback. The memory belongs to the cache
   * from here on and is closed by {@link #close}.
   */
  public static WriteCache open(CacheMemory mem, BackingStore backing, CacheConfig config)
      throws IOException {
    WriteCache cache = openManual(mem, backing, config);
    cache.writebackThread.start();
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
    cache.recover();
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

  /** A backing file known to the engine: open, or holding cached blocks, or both. */
  /** A backing file while this mount lasts: st_dev and st_ino (two filesystems may share ino). */
  record FileKey(long dev, long ino) {}

  static final class CachedFile {
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
    /** Path relative to the backing root, as recorded in the file table; null once unknown. */
    volatile String path;
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
    BackingStore.BackingFile file;

    FileKey key() {
      return new FileKey(dev, ino);
    }

    CachedFile(long dev, long ino, String path, long size, long mtimeNanos) {
      this.dev = dev;
      this.ino = ino;
      this.path = path;
      this.size = size;
      this.mtimeNanos = mtimeNanos;
    }
  }

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
    BackingStore.Stat st = backing.stat(path);
    if (st == null) {
      throw new java.nio.file.NoSuchFileException(path);
    }
    if (!st.regularFile()) {
      throw new IOException(path + " is not a regular file");
    }
    FileKey key = new FileKey(st.dev(), st.ino());
    synchronized (index) {
      CachedFile f = files.get(key);
      if (f == null) {
        f = new CachedFile(st.dev(), st.ino(), path, st.size(), st.mtimeNanos());
        f.writeThrough = !CacheLayout.pathFits(path);
        if (f.writeThrough) {
          LOG.info("{}: path longer than {} bytes, writes go straight to the backing file", path,
              CacheLayout.MAX_PATH_BYTES);
        }
        files.put(key, f);
      }
      f.handles++;
      return new OpenFile(f);
    }
  }

  public void close(OpenFile h) throws IOException {
    CachedFile f = h.file;
    f.lock.writeLock().lock();
    try {
      synchronized (index) {
        if (h.closed) {
          return;
        }
        h.closed = true;
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
   * then). Needs f.lock and index.
   */
  private void forgetIfUnused(CachedFile f) throws IOException {
    if (f.handles == 0 && f.fileSlot < 0 && f.versionSeq == CacheLayout.FREE
        && !writeThroughDirty.contains(f)) {
      if (files.get(f.key()) == f) {
        files.remove(f.key());
      }
      if (f.file != null) {
        f.file.close();
        f.file = null;
      }
    }
  }

  private BackingStore.BackingFile backingFile(CachedFile f) throws IOException {
    synchronized (f) {
      if (f.file == null) {
        if (f.path == null) {
          throw new IOException("backing file of inode " + f.ino + " has no name left");
        }
        f.file = backing.open(f.path);
      }
      return f.file;
    }
  }

  /** The logical size of a file the engine knows, or -1: getattr must show it, not the disk's. */
  public long cachedSize(long dev, long ino) {
    synchronized (index) {
      CachedFile f = files.get(new FileKey(dev, ino));
      return f == null ? -1 : f.size;
    }
  }

  /** The mtime of a file the engine knows (nanoseconds), or -1. */
  public long cachedMtime(long dev, long ino) {
    synchronized (index) {
      CachedFile f = files.get(new FileKey(dev, ino));
      return f == null ? -1 : f.mtimeNanos;
    }
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
    checkError();
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
        epochLock.readLock().lock();
        try {
          need = slotsNeeded(f, first, count);
          int[] reserved = reserve(f, need);
          if (reserved != null) {
            storeBlocks(f, offset, src, length, first, count, reserved,
                headFromDisk ? fill.address() : 0, tailFromDisk ? fill.address() + blockSize : 0);
            return;
          }
        } finally {
          epochLock.readLock().unlock();
        }
      } finally {
        f.lock.writeLock().unlock();
        namespaceLock.readLock().unlock();
      }
      waitForFreeSlots(need + 1);
    }
  }

  private void writeThrough(CachedFile f, long offset, long src, long length) throws IOException {
    f.io.lock();
    try {
      backingFile(f).write(offset, src, length);
    } finally {
      f.io.unlock();
    }
    writes.add((length + blockSize - 1) / blockSize);
    if (offset + length > f.size) {
      f.size = offset + length;
    }
    f.mtimeNanos = now();
    synchronized (index) {
      if (!writeThroughDirty.contains(f)) {
        writeThroughDirty.add(f);
      }
    }
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
    long got = valid > 0 ? backingFile(f).read(start, buf, valid) : 0;
    // Past the logical size a block reads as zeros, whatever the disk still holds there.
    NativeBuffer.zero(buf + got, blockSize - got);
    return true;
  }

  private int slotsNeeded(CachedFile f, long first, int count) {
    int need = 0;
    for (int i = 0; i < count; i++) {
      int s = f.blocks.get(first + i);
      if (s < 0 || (state[s] & KIND) != UNCOMMITTED) {
        need++;
      }
    }
    return need;
  }

  /** Takes {@code need} free slots (and a file slot if the file has none), or null if short. */
  private int[] reserve(CachedFile f, int need) throws IOException {
    synchronized (index) {
      boolean needFileSlot = f.fileSlot < 0;
      if (freeCount < need || (needFileSlot && freeFileSlotCount == 0)) {
        return null;
      }
      if (needFileSlot) {
        f.fileSlot = freeFileSlots[--freeFileSlotCount];
        byFileSlot[f.fileSlot] = f;
        f.version = 1; // storeFileMeta switches to version 0
        f.versionSeq = CacheLayout.FREE;
      }
      int[] out = new int[need];
      for (int i = 0; i < need; i++) {
        int s = freeHead;
        freeHead = lruNext[s];
        freeCount--;
        state[s] = RESERVED;
        out[i] = s;
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
    long epoch = openEpoch;
    try {
      for (int i = 0; i < count; i++) {
        long b = first + i;
        long start = b * blockSize;
        long from = Math.max(offset, start);
        long to = Math.min(end, start + blockSize);
        int old = f.blocks.get(b);
        if (old >= 0 && (state[old] & KIND) == UNCOMMITTED) {
          mem.copyIn(layout.dataOffset(old) + (from - start), src + (from - offset), to - from);
          writeHitsUncommitted.increment();
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
      synchronized (index) { // once per chunk, not per block: this is the write hot path
        for (int k = 0; k < next; k++) {
          int slot = reserved[k];
          state[slot] = UNCOMMITTED;
          lruAppend(slot);
          dirtyCount++;
          noteUncommitted(slot);
          if (replaced[k] >= 0) {
            supersede(replaced[k]);
            writeHitsCommitted.increment();
          } else {
            writesAllocated.increment();
          }
        }
      }
      writes.add(count);
      if (end > f.size) {
        f.size = end;
      }
      f.mtimeNanos = now();
      storeFileMeta(f);
    } catch (IOException | RuntimeException e) {
      throw fail(e);
    }
  }

  /** Needs index. */
  private void noteUncommitted(int slot) {
    if (uncommitted.isEmpty()) {
      firstUncommittedNanos = System.nanoTime();
    }
    uncommitted.add(slot);
  }

  /** A slot whose block has a newer version (or was dropped): freed after the next commit. */
  private void supersede(int slot) {
    state[slot] = (byte) ((state[slot] & WB) | SUPERSEDED);
    lruRemove(slot);
    dirtyCount--;
    pendingFree.add(slot);
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
    long epoch = openEpoch;
    if (f.versionSeq == epoch && !whole) {
      layout.storeFileSizeMtime(f.fileSlot, f.version, f.size, f.mtimeNanos);
      return;
    }
    int v = f.versionSeq == epoch ? f.version : 1 - f.version; // an uncommitted one in place
    layout.storeFileVersion(f.fileSlot, v, epoch, f.ino, CacheLayout.devHint(f.dev), f.size,
        f.mtimeNanos, f.path, f.unlinking);
    f.version = v;
    f.versionSeq = epoch;
    synchronized (index) {
      dirtyVersions.add(f.fileSlot * 2 + v);
    }
  }

  private void waitForFreeSlots(int need) throws IOException {
    writesBlocked.increment();
    // The cache may be full of uncommitted blocks that writeback cannot take: commit them.
    commit();
    if (!writebackThread.isAlive()) {
      writebackStep(); // manual mode: nobody else will make room
      return;
    }
    synchronized (index) {
      blockedWriters++;
      index.notifyAll();
      try {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(200);
        while (freeCount < need && error == null && !closing) {
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            break; // re-check under the caller's locks; the file may need fewer slots now
          }
          index.wait(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)));
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while waiting for free cache blocks");
      } finally {
        blockedWriters--;
      }
    }
    checkError();
  }

  private void maybeAutocommit() throws IOException {
    boolean due;
    synchronized (index) {
      due = uncommitted.size() >= config.autocommitBlocks();
    }
    if (due) {
      commit();
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
      reads.add(blocksRead);
      readHits.add(hits);
      return n;
    } finally {
      f.lock.readLock().unlock();
    }
  }

  private void readBacking(CachedFile f, long pos, long dst, long length) throws IOException {
    long got = backingFile(f).read(pos, dst, length);
    if (got < length) {
      NativeBuffer.zero(dst + got, length - got); // a hole past the disk's end of file
    }
  }

  // =============================================================================================
  // Commit
  // =============================================================================================

  /**
   * fsync: makes every write that returned before this call durable. Concurrent callers share
   * one commit (group commit): a caller whose epoch another caller committed meanwhile returns.
   */
  public void commit() throws IOException {
    checkError();
    long ticket = commitTickets.incrementAndGet();
    long target = openEpoch;
    syncBackingFiles(ticket);
    commitLock.lock();
    try {
      boolean dirsDirty;
      synchronized (index) {
        dirsDirty = !dirtyDirectories.isEmpty();
      }
      // Group commit: an epoch committed meanwhile covers our writes, but not a name changed
      // after that commit took its directories.
      if ((committedSeq > target && !dirsDirty) || nothingToCommit()) {
        return;
      }
      commitEpoch();
    } finally {
      commitLock.unlock();
    }
  }

  /**
   * fsyncs the backing files of write-through files and size-only changes. A failure is
   * reported to this commit and to every commit that began before it was seen (they may cover
   * the same writes), and the files stay queued for the next one: an fsync error is never
   * forgotten into a later success of a commit that overlapped it.
   */
  private void syncBackingFiles(long ticket) throws IOException {
    writeThroughLock.lock();
    try {
      List<CachedFile> syncFiles;
      synchronized (index) {
        syncFiles = writeThroughDirty;
        if (!syncFiles.isEmpty()) {
          writeThroughDirty = new ArrayList<>();
        }
      }
      for (int i = 0; i < syncFiles.size(); i++) {
        CachedFile f = syncFiles.get(i);
        try {
          BackingStore.BackingFile file;
          synchronized (f) {
            file = f.file;
          }
          if (file == null && f.path == null) {
            continue; // never opened and unlinked since: no name, nothing to make durable
          }
          (file != null ? file : backingFile(f)).sync(); // write-through: the backing fsync
          if (f.lock.writeLock().tryLock()) { // no wait: a commit may hold another file's
            try {
              synchronized (index) {
                if (!writeThroughDirty.contains(f)) {
                  forgetIfUnused(f);
                }
              }
            } finally {
              f.lock.writeLock().unlock();
            }
          }
        } catch (IOException e) {
          synchronized (index) {
            for (CachedFile g : syncFiles.subList(i, syncFiles.size())) {
              if (!writeThroughDirty.contains(g)) {
                writeThroughDirty.add(g);
              }
            }
          }
          writeThroughFailure = new IOException("fsync of backing file " + f.path + " failed: "
              + e.getMessage(), e);
          writeThroughFailureTicket = commitTickets.get();
          LOG.warn("{}", writeThroughFailure.getMessage());
          break;
        }
      }
      if (writeThroughFailure != null && ticket <= writeThroughFailureTicket) {
        throw writeThroughFailure;
      }
    } finally {
      writeThroughLock.unlock();
    }
  }

  private boolean nothingToCommit() {
    synchronized (index) {
      return uncommitted.isEmpty() && dirtyVersions.isEmpty() && pendingFree.isEmpty()
          && pendingFileFree.isEmpty() && dirtyDirectories.isEmpty();
    }
  }

  /**
   * Records that the entries of {@code path}'s parent directory changed (fs calls it after
   * create, mkdir, mknod, symlink, link, rmdir): the next commit makes them durable.
   */
  public void namespaceChanged(String path) {
    synchronized (index) {
      dirtyDirectories.add(parentOf(path));
    }
  }

  private static String parentOf(String path) {
    int slash = path.lastIndexOf('/');
    return slash < 0 ? "" : path.substring(0, slash);
  }

  /**
   * fsyncs the directories changed since the last commit. Called with epochLock held
   * exclusively, so no write can store a slot naming a path whose directory entry is newer
   * than the set taken here. A failure puts them back and fails the commit, latching nothing:
   * it is the backing disk's error, not the cache's.
   */
  private void syncDirectories() throws IOException {
    Set<String> dirs;
    synchronized (index) {
      if (dirtyDirectories.isEmpty()) {
        return;
      }
      dirs = dirtyDirectories;
      dirtyDirectories = new HashSet<>();
    }
    try {
      for (String d : dirs) {
        if (backing.stat(d) != null) { // removed since: its parent's fsync covers that
          backing.syncDirectory(d);
        }
      }
    } catch (IOException e) {
      synchronized (index) {
        dirtyDirectories.addAll(dirs);
      }
      throw new IOException("fsync of a backing directory failed: " + e.getMessage(), e);
    }
  }

  /** DESIGN.md's commit sequence; holds epochLock exclusively from the first flush to the end. */
  private void commitEpoch() throws IOException {
    long startNanos = System.nanoTime();
    epochLock.writeLock().lock();
    try {
      syncDirectories(); // 0. names first: what this epoch commits may rely on them
      commitEpochLocked(startNanos);
    } finally {
      epochLock.writeLock().unlock();
    }
  }

  private void commitEpochLocked(long startNanos) throws IOException {
    try {
      long epoch = openEpoch;
      IntList blocks;
      IntList versions;
      IntList frees;
      IntList fileFrees;
      synchronized (index) {
        blocks = uncommitted;
        versions = dirtyVersions;
        frees = pendingFree;
        fileFrees = pendingFileFree;
        if (blocks.isEmpty() && versions.isEmpty() && frees.isEmpty() && fileFrees.isEmpty()) {
          return; // only directories to sync (a new empty file's name): no cache commit
        }
        uncommitted = new IntList();
        dirtyVersions = new IntList();
        pendingFree = new IntList();
        pendingFileFree = new IntList();
      }
      // 1. pmem_flush every block, entry and file version of the epoch, then pmem_commit.
      for (int i = 0; i < blocks.size(); i++) {
        layout.flushBlock(blocks.get(i));
        layout.flushEntry(blocks.get(i));
      }
      for (int i = 0; i < versions.size(); i++) {
        layout.flushFileVersion(versions.get(i) / 2, versions.get(i) % 2);
      }
      mem.commit();
      // 2. The commit point: seq_count = epoch + 1, one atomic store, flushed and committed.
      layout.storeSeqCount(epoch + 1);
      mem.commit();
      committedSeq = epoch + 1;
      openEpoch = epoch + 1;
      // 3. Old versions the epoch replaced, then file slots it released, freed in that order.
      releaseSlots(frees, fileFrees);
      synchronized (index) {
        for (int i = 0; i < blocks.size(); i++) {
          int s = blocks.get(i);
          if ((state[s] & KIND) == UNCOMMITTED) {
            state[s] = (byte) ((state[s] & WB) | COMMITTED);
          }
        }
        commitTimes.addLast(new long[] {epoch, System.nanoTime()});
        oldestDirtyAgeNanos(System.nanoTime()); // prunes commitTimes
        flushes.increment();
        recordLatency(System.nanoTime() - startNanos);
        // Wake writeback only when it waits for committed blocks: a wakeup per fsync costs
        // a context switch, which on a 2-core machine is more than the commit itself.
        if (writebackWantsCommitted || usedPercentAbove(config.highWatermark())) {
          index.notifyAll();
        }
      }
    } catch (IOException | RuntimeException e) {
      throw fail(e);
    }
  }

  /** Frees entries (seq = -1) durably, then file slots; only then may they be reused. */
  private void releaseSlots(IntList frees, IntList fileFrees) throws IOException {
    if (frees.isEmpty() && fileFrees.isEmpty()) {
      return;
    }
    for (int i = 0; i < frees.size(); i++) {
      layout.storeEntryFree(frees.get(i));
      layout.flushEntry(frees.get(i));
    }
    mem.commit();
    if (!fileFrees.isEmpty()) {
      for (int i = 0; i < fileFrees.size(); i++) {
        storeFileSlotFree(fileFrees.get(i));
      }
      mem.commit();
    }
    synchronized (index) {
      for (int i = 0; i < frees.size(); i++) {
        int s = frees.get(i);
        if ((state[s] & WB) != 0) {
          state[s] = (byte) (WB | FREED_AFTER_WB);
        } else {
          pushFree(s);
        }
      }
      for (int i = 0; i < fileFrees.size(); i++) {
        pushFreeFileSlot(fileFrees.get(i));
      }
      if (blockedWriters > 0) {
        // Only writers waiting for free slots care. Waking the writeback thread too (it waits
        // on the same monitor) cost a context switch per overwriting fsync: 19% of the
        // daemon's CPU with 4 fio jobs.
        index.notifyAll();
      }
    }
  }

  /**
   * Frees both versions of a file slot, the older one durably first: were the newer one freed
   * alone, a crash would let the older version (stale size and path) win recovery.
   */
  private void storeFileSlotFree(int fileSlot) throws IOException {
    long seq0 = layout.readFileVersion(fileSlot, 0).seq();
    long seq1 = layout.readFileVersion(fileSlot, 1).seq();
    int older = Long.compareUnsigned(seq0 + 1, seq1 + 1) < 0 ? 0 : 1; // FREE (-1) sorts first
    layout.storeFileVersionFree(fileSlot, older);
    layout.flushFileVersion(fileSlot, older);
    mem.commit();
    layout.storeFileVersionFree(fileSlot, 1 - older);
    layout.flushFileVersion(fileSlot, 1 - older);
  }

  /** Needs index. */
  private void pushFree(int s) {
    state[s] = FREE;
    lruNext[s] = freeHead;
    freeHead = s;
    freeCount++;
  }

  /** Needs index. */
  private void pushFreeFileSlot(int fileSlot) {
    byFileSlot[fileSlot] = null;
    freeFileSlots[freeFileSlotCount++] = fileSlot;
  }

  private void recordLatency(long nanos) {
    commitLatencies[(int) (commitLatencyCount++ % commitLatencies.length)] = nanos;
    commitLatencyMax = Math.max(commitLatencyMax, nanos);
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
    checkError();
    CachedFile f = h.file;
    try (NativeBuffer zeros = new NativeBuffer(blockSize)) {
      for (int waitFor = 0; ; ) {
        if (waitFor > 0) {
          waitForFreeSlots(waitFor); // with no lock held: writeback may need this file's
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
            epochLock.readLock().lock();
            try {
              if (tailSlot >= 0) {
                need = (state[tailSlot] & KIND) == UNCOMMITTED ? 0 : 1;
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
              epochLock.readLock().unlock();
            }
            commit();
          } else {
            f.size = size;
            f.mtimeNanos = now();
          }
          BackingStore.BackingFile file = backingFile(f);
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
            synchronized (index) {
              if (!writeThroughDirty.contains(f)) {
                writeThroughDirty.add(f);
              }
            }
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
    synchronized (index) {
      for (long b : keys) {
        if (b >= fromBlock) {
          supersede(f.blocks.remove(b));
        }
      }
    }
  }

  /** Sets a file's mtime (utimens); cached files keep it for writeback. */
  public void setMtime(String path, long mtimeNanos) throws IOException {
    BackingStore.Stat st = backing.stat(path);
    CachedFile f = st == null ? null : known(st);
    if (f == null) {
      return;
    }
    f.lock.writeLock().lock();
    try {
      f.mtimeNanos = mtimeNanos;
      if (f.fileSlot >= 0) {
        epochLock.readLock().lock();
        try {
          storeFileMeta(f);
        } finally {
          epochLock.readLock().unlock();
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
      CachedFile f = st == null ? null : known(st);
      if (f == null) {
        backing.unlink(path);
        namespaceChanged(path);
        return;
      }
      if (st.nlink() > 1) {
        writeBackFile(f);
        backing.unlink(path);
        namespaceChanged(path);
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
      namespaceChanged(path);
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
      List<CachedFile> moving = new ArrayList<>();
      synchronized (index) {
        for (CachedFile f : files.values()) {
          String p = f.path;
          if (p != null && (p.equals(from) || p.startsWith(from + "/"))) {
            moving.add(f);
          }
        }
      }
      for (CachedFile f : moving) {
        writeBackFile(f);
      }
      CachedFile victim = null;
      if (dst != null && dst.regularFile() && (src == null || src.ino() != dst.ino())) {
        victim = known(dst);
        if (victim != null && dst.nlink() > 1) {
          writeBackFile(victim);
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
      namespaceChanged(from);
      namespaceChanged(to);
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
      epochLock.readLock().lock();
      try {
        f.unlinking = unlinking;
        storeFileMeta(f, true);
      } finally {
        epochLock.readLock().unlock();
      }
      commit();
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  private CachedFile known(BackingStore.Stat st) {
    synchronized (index) {
      return files.get(new FileKey(st.dev(), st.ino()));
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
      epochLock.readLock().lock();
      try {
        dropBlocks(f, 0);
        synchronized (index) {
          pendingFileFree.add(f.fileSlot);
          f.fileSlot = -1;
          f.versionSeq = CacheLayout.FREE;
          forgetIfUnused(f);
        }
      } finally {
        epochLock.readLock().unlock();
      }
      commit();
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  // =============================================================================================
  // Writeback
  // =============================================================================================

  /** Writes one file back completely and releases its file slot. Holds f.lock throughout. */
  private void writeBackFile(CachedFile f) throws IOException {
    f.lock.writeLock().lock();
    try {
      if (f.fileSlot < 0) {
        return;
      }
      commit(); // every block of f is committed from here on: we hold its lock
      long[] keys = f.blocks.keysSorted();
      int[] slots = new int[keys.length];
      for (int i = 0; i < keys.length; i++) {
        slots[i] = f.blocks.get(keys[i]);
      }
      copyToBacking(f, keys, slots, f.size, f.mtimeNanos);
      freeWrittenBack(f, keys, slots);
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /**
   * Writes blocks to the backing file in contiguous runs, then fsyncs it with the file's size
   * and mtime as of when the blocks were taken. Takes f.io.
   */
  private void copyToBacking(CachedFile f, long[] blockIdx, int[] slots, long size, long mtime)
      throws IOException {
    f.io.lock();
    try {
      copyLocked(f, blockIdx, slots, size, mtime);
    } finally {
      f.io.unlock();
    }
    warnIfReplaced(f);
  }

  /** One writeback copy's scratch; {@code copy} is null when the memory has an address. */
  private record WritebackScratch(IoVec iov, NativeBuffer copy) implements AutoCloseable {
    @Override
    public void close() {
      iov.close();
      if (copy != null) {
        copy.close();
      }
    }
  }

  private void copyLocked(CachedFile f, long[] blockIdx, int[] slots, long size, long mtime)
      throws IOException {
    BackingStore.BackingFile file = backingFile(f);
    // A drain (flush, unmount) and any long contiguous run bypass the page cache (as bcache's
    // sequential cutoff does): nobody rereads such data through the backing page cache, the
    // kernel's cache of the mount already holds what was just written, and on a VM whose host
    // reclaims free memory, fresh page-cache pages cost more than the disk. Short runs of
    // background writeback keep it: files in use are reread from there once their blocks
    // leave the cache (random reads: 27k IOPS direct, 43k buffered).
    boolean bypassPageCache;
    synchronized (index) {
      bypassPageCache = drainRequests > 0 || closing;
    }
    // The kernel reads the slots straight from the mapping (no copy of our own): their data
    // stays put while we write, because a committed slot is never overwritten in place and a
    // slot marked WB is not reused before writeback lets go of it (clearWriteback).
    long mapped = mem.address();
    int maxRun = config.writebackJobs();
    WritebackScratch scratch = writebackScratch.poll();
    if (scratch == null) {
      scratch = new WritebackScratch(new IoVec(maxRun),
          mapped != 0 ? null : new NativeBuffer((long) maxRun * blockSize, 4096));
    }
    try {
      IoVec iov = scratch.iov();
      int i = 0;
      while (i < slots.length) {
        int j = i;
        while (j + 1 < slots.length && j + 1 - i < maxRun && blockIdx[j + 1] == blockIdx[j] + 1) {
          j++;
        }
        long start = blockIdx[i] * blockSize;
        if (start < size) {
          // Whole blocks, also the one holding the end of file: the truncate below cuts it.
          int n = (int) Math.min(j - i + 1, (size - start + blockSize - 1) / blockSize);
          iov.clear();
          for (int k = i, run; k < i + n; k += run) {
            run = 1; // slots allocated in a row make one buffer
            while (k + run < i + n && slots[k + run] == slots[k] + run) {
              run++;
            }
            long from = layout.dataOffset(slots[k]);
            long len = (long) run * blockSize;
            if (mapped != 0) {
              iov.add(mapped + from, len);
            } else {
              long to = scratch.copy().address() + (long) (k - i) * blockSize;
              mem.copyOut(from, to, len);
              iov.add(to, len);
            }
          }
          boolean direct = bypassPageCache || (long) n * blockSize >= SEQUENTIAL_CUTOFF;
          file.writeBlocks(start, iov, direct);
        }
        i = j + 1;
      }
    } finally {
      writebackScratch.push(scratch);
    }
    if (file.size() != size) {
      file.truncate(size);
    }
    file.setMtime(mtime);
    file.sync(); // durable on the backing disk before freeWrittenBack frees any of these slots
  }

  /**
   * Backing files are wcfs's to change while they have cached blocks. If one was deleted or
   * replaced behind its back, its blocks went to the inode wcfs had open, which the path no
   * longer shows: say so, naming the file, once per file.
   */
  private void warnIfReplaced(CachedFile f) throws IOException {
    String path = f.path;
    if (path == null || f.replacedWarned) {
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

  /**
   * Frees slots whose data is now durable in the backing file: seq = -1 durably, then the file
   * slot if the file has nothing left. Needs f.lock exclusively.
   */
  private void freeWrittenBack(CachedFile f, long[] blockIdx, int[] slots) throws IOException {
    IntList freed = new IntList();
    for (int i = 0; i < slots.length; i++) {
      int s = slots[i];
      if (f.blocks.get(blockIdx[i]) == s && (state[s] & KIND) == COMMITTED) {
        layout.storeEntryFree(s);
        layout.flushEntry(s);
        freed.add(s);
      }
    }
    mem.commit();
    boolean releaseFile;
    synchronized (index) {
      for (int i = 0; i < freed.size(); i++) {
        int s = freed.get(i);
        f.blocks.remove(CacheLayout.locationBlock(layout.entryLocation(s)));
        lruRemove(s);
        dirtyCount--;
        if ((state[s] & WB) != 0) {
          state[s] = (byte) (WB | FREED_AFTER_WB);
        } else {
          pushFree(s);
        }
      }
      writtenBack.add(freed.size());
      releaseFile = f.blocks.size() == 0 && f.fileSlot >= 0 && f.versionSeq < committedSeq;
    }
    if (releaseFile) {
      int fs = f.fileSlot;
      storeFileSlotFree(fs);
      mem.commit();
      synchronized (index) {
        f.fileSlot = -1;
        f.versionSeq = CacheLayout.FREE;
        pushFreeFileSlot(fs);
        forgetIfUnused(f);
      }
    }
    synchronized (index) {
      index.notifyAll();
    }
  }

  private void writebackLoop() {
    long backoffMs = 100;
    // Errors logged since writeback last succeeded: one that lasts (a backing file nobody made
    // writable yet) is logged once, not once per retry; status shows it all along.
    java.util.Set<String> logged = new java.util.HashSet<>();
    while (true) {
      try {
        List<CachedFile> groupFiles = new ArrayList<>();
        List<int[]> groupSlots = new ArrayList<>();
        if (!nextBatch(groupFiles, groupSlots)) {
          return;
        }
        writeBackBatch(groupFiles, groupSlots);
        backoffMs = 100;
        if (!logged.isEmpty() && !groupFiles.isEmpty()) {
          LOG.info("writeback works again");
          logged.clear();
        }
      } catch (IOException | RuntimeException e) {
        writebackErrors.increment();
        lastWritebackError = e.getMessage();
        if (logged.size() >= 64) {
          logged.clear(); // errors that differ every time: keep the set small, log anew
        }
        if (logged.add(e.toString())) {
          LOG.warn("writeback failed, blocks stay in the cache, retrying with backoff (this"
              + " error is not logged again until writeback works): {}", e.toString());
        } else {
          LOG.debug("writeback failed again, retrying in {} ms: {}", backoffMs, e.toString());
        }
        synchronized (index) {
          writebackBackoffUntil = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(backoffMs);
        }
        backoffMs = Math.min(5000, backoffMs * 2);
      } catch (Error e) {
        LOG.error("writeback thread died", e);
        throw e;
      }
    }
  }

  private void writeBackBatch(List<CachedFile> groupFiles, List<int[]> groupSlots)
      throws IOException {
    try {
      // Hook (issue 14): may this cache write back now? A claimed backing directory on a
      // shared filesystem says no once its lease lapsed or another machine took it over.
      // Throwing fails the batch like a backing I/O error: blocks stay cached, retried later.
      if (!groupFiles.isEmpty()) {
        backing.checkMayWriteBack();
      }
      for (int g = 0; g < groupFiles.size(); g++) {
        writeBackGroup(groupFiles.get(g), groupSlots.get(g));
      }
    } finally {
      synchronized (index) {
        for (int[] slots : groupSlots) {
          for (int s : slots) {
            clearWriteback(s);
          }
        }
        writebackInFlight = 0;
        index.notifyAll();
      }
    }
  }

  /**
   * One writeback batch of the oldest committed blocks, now, whatever the watermarks; returns
   * the number of blocks taken. Drives writeback in tests that run without the thread.
   */
  int writebackStep() throws IOException {
    List<CachedFile> groupFiles = new ArrayList<>();
    List<int[]> groupSlots = new ArrayList<>();
    int taken;
    synchronized (index) {
      collectBatch(groupFiles, groupSlots);
      taken = writebackInFlight;
    }
    try {
      writeBackBatch(groupFiles, groupSlots);
    } catch (IOException | RuntimeException e) {
      writebackErrors.increment();
      lastWritebackError = e.getMessage();
      throw e;
    }
    return taken;
  }

  /** Needs index. */
  private void clearWriteback(int s) {
    if ((state[s] & WB) == 0) {
      return;
    }
    if ((state[s] & KIND) == FREED_AFTER_WB) {
      pushFree(s);
    } else {
      state[s] &= ~WB;
    }
  }

  /**
   * Waits for work and takes the oldest committed blocks, grouped per file and sorted by block.
   * Returns false when the cache is closing and everything is written back.
   */
  private boolean nextBatch(List<CachedFile> groupFiles, List<int[]> groupSlots)
      throws IOException {
    boolean needCommit = false;
    synchronized (index) {
      while (true) {
        long now = System.nanoTime();
        boolean draining = drainRequests > 0 || config.cleaner() || closing;
        if (usedPercentAbove(config.highWatermark())) {
          writebackActive = true;
        } else if ((nBlocks - freeCount) * 100 < (long) config.lowWatermark() * nBlocks) {
          writebackActive = false;
        }
        boolean aged = config.maxAgeMs() > 0 && oldestDirtyAgeNanos(now)
            >= TimeUnit.MILLISECONDS.toNanos(config.maxAgeMs());
        boolean autocommitDue = !uncommitted.isEmpty() && now - firstUncommittedNanos
            >= TimeUnit.MILLISECONDS.toNanos(config.autocommitTimeMs());
        boolean backingOff = now < writebackBackoffUntil;
        boolean want = (draining || writebackActive || blockedWriters > 0 || aged) && !backingOff
            && error == null;
        writebackWantsCommitted = want;
        if (want) {
          collectBatch(groupFiles, groupSlots);
          if (!groupFiles.isEmpty()) {
            return true;
          }
          if (!uncommitted.isEmpty() && (draining || blockedWriters > 0)) {
            needCommit = true;
            break;
          }
          if (dirtyCount == 0 && closing) {
            return false;
          }
        } else if (closing && (error != null || dirtyCount == 0)) {
          return false;
        }
        if (autocommitDue) {
          needCommit = true;
          break;
        }
        long waitMs = 100;
        if (!uncommitted.isEmpty()) {
          long due = firstUncommittedNanos
              + TimeUnit.MILLISECONDS.toNanos(config.autocommitTimeMs()) - now;
          waitMs = Math.max(1, Math.min(waitMs, TimeUnit.NANOSECONDS.toMillis(due)));
        }
        try {
          index.wait(waitMs);
        } catch (InterruptedException e) {
          return false;
        }
      }
    }
    if (needCommit) {
      commit();
    }
    return true;
  }

  /**
   * Needs index. Takes up to {@code WRITEBACK_BATCH_JOBS} x writeback_jobs committed slots from
   * the LRU head. Memory in flight stays bounded by writeback_jobs blocks (the copy buffer is
   * reused run after run); the larger batch spreads one fsync per file over more data: with
   * one fsync per 4 MiB, draining 1 GiB ran at 0.2x a plain sequential write on this machine.
   */
  private void collectBatch(List<CachedFile> groupFiles, List<int[]> groupSlots)
      throws IOException {
    Map<CachedFile, IntList> byFile = new HashMap<>();
    int taken = 0;
    int limit = config.writebackJobs() * WRITEBACK_BATCH_JOBS;
    for (int s = lruHead; s >= 0 && taken < limit; s = lruNext[s]) {
      if ((state[s] & KIND) != COMMITTED) {
        break; // allocation order = epoch order: everything after is uncommitted too
      }
      if ((state[s] & WB) != 0) {
        continue;
      }
      CachedFile f = byFileSlot[CacheLayout.locationFileSlot(layout.entryLocation(s))];
      state[s] |= WB;
      byFile.computeIfAbsent(f, k -> new IntList()).add(s);
      taken++;
    }
    writebackInFlight = taken;
    for (Map.Entry<CachedFile, IntList> e : byFile.entrySet()) {
      IntList l = e.getValue();
      int[] slots = new int[l.size()];
      for (int i = 0; i < slots.length; i++) {
        slots[i] = l.get(i);
      }
      groupFiles.add(e.getKey());
      groupSlots.add(slots);
    }
  }

  /**
   * One file's share of a batch: copy under the file's read lock (a truncate cannot slip
   * between our size check and the write), fsync without it, free under its write lock.
   */
  private void writeBackGroup(CachedFile f, int[] slots) throws IOException {
    long[] blockIdx = new long[slots.length];
    for (int i = 0; i < slots.length; i++) {
      blockIdx[i] = CacheLayout.locationBlock(layout.entryLocation(slots[i]));
    }
    sortByBlock(blockIdx, slots);
    long size;
    long mtime;
    f.lock.readLock().lock();
    try {
      // Blocks replaced or dropped since the batch was taken are not written.
      int n = 0;
      for (int i = 0; i < slots.length; i++) {
        if (f.blocks.get(blockIdx[i]) == slots[i]) {
          blockIdx[n] = blockIdx[i];
          slots[n++] = slots[i];
        }
      }
      blockIdx = Arrays.copyOf(blockIdx, n);
      slots = Arrays.copyOf(slots, n);
      if (n == 0 || f.path == null) {
        return;
      }
      size = f.size;
      mtime = f.mtimeNanos;
      // io before lock is released: a truncate, write-through or writeBackFile that follows
      // this snapshot waits for our copy instead of racing it with newer bytes.
      f.io.lock();
    } finally {
      f.lock.readLock().unlock();
    }
    boolean vanished = false;
    try {
      copyToBacking(f, blockIdx, slots, size, mtime);
    } catch (java.nio.file.NoSuchFileException e) {
      vanished = true;
    } finally {
      f.io.unlock();
    }
    if (vanished) {
      // Deleted behind wcfs's back before wcfs had it open (an open file is written through
      // its descriptor whatever its names): keep the blocks, somewhere a person finds them.
      moveToLostAndFound(f, "was deleted in the backing directory behind wcfs's back");
      return; // the next batch writes them there
    }
    f.lock.writeLock().lock();
    try {
      freeWrittenBack(f, blockIdx, slots);
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  private static void sortByBlock(long[] blockIdx, int[] slots) {
    Integer[] order = new Integer[slots.length];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    Arrays.sort(order, (a, b) -> Long.compare(blockIdx[a], blockIdx[b]));
    long[] bi = blockIdx.clone();
    int[] sl = slots.clone();
    for (int i = 0; i < order.length; i++) {
      blockIdx[i] = bi[order[i]];
      slots[i] = sl[order[i]];
    }
  }

  /** Needs index. More than {@code pct} percent of the blocks are in use. */
  private boolean usedPercentAbove(int pct) {
    return (nBlocks - freeCount) * 100 > (long) pct * nBlocks;
  }

  /** Needs index. */
  private long oldestDirtyAgeNanos(long now) throws IOException {
    if (lruHead < 0) {
      while (commitTimes.size() > 1) {
        commitTimes.pollFirst();
      }
      return 0;
    }
    long seq = layout.entrySeq(lruHead);
    while (commitTimes.size() > 1 && commitTimes.peekFirst()[0] < seq) {
      commitTimes.pollFirst();
    }
    long[] first = commitTimes.peekFirst();
    return first == null || first[0] < seq ? 0 : now - first[1];
  }

  /**
   * Commits, then writes everything back and waits until the cache is empty (wcfs flush,
   * unmount). Throws if writeback keeps failing past {@code timeoutMs}, leaving data cached.
   */
  public void flush(long timeoutMs) throws IOException {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
    synchronized (index) {
      drainRequests++;
      index.notifyAll();
    }
    try {
      while (true) {
        commit();
        if (!writebackThread.isAlive() && !closing) {
          writebackStep(); // manual mode
        }
        synchronized (index) {
          if (dirtyCount == 0 && uncommitted.isEmpty() && writeThroughDirty.isEmpty()) {
            return;
          }
          checkError();
          if (System.nanoTime() > deadline) {
            throw new IOException("writeback did not finish in " + timeoutMs + " ms: "
                + dirtyCount + " blocks still dirty and kept in the cache"
                + (lastWritebackError == null ? "" : "; last error: " + lastWritebackError));
          }
          index.wait(50);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while flushing");
    } finally {
      synchronized (index) {
        drainRequests--;
      }
    }
  }

  // =============================================================================================
  // Recovery
  // =============================================================================================

  /**
   * Rebuilds the index from the device: uncommitted records are freed; of duplicate versions of
   * a block the highest committed seq wins, equal seqs are corruption; files whose recorded path
   * no longer leads to their inode (unlinked or replaced before a crash) are dropped; blocks past
   * a file's recorded size are dropped and the backing file is cut to that size.
   */
  private void recover() throws IOException {
    long seqCount = layout.seqCount();
    openEpoch = seqCount;
    committedSeq = seqCount;
    int fileSlots = layout.geometry().fileSlots();
    IntList freedFileSlots = new IntList();
    java.util.BitSet slotsWithFiles = new java.util.BitSet(fileSlots);
    // Nothing is written until every record was read and checked: a cache refused as
    // corrupt is left exactly as it was.
    IntList uncommittedVersions = new IntList();
    for (int fs = fileSlots - 1; fs >= 0; fs--) {
      CacheLayout.FileVersion best = null;
      int bestV = -1;
      for (int v = 0; v < 2; v++) {
        CacheLayout.FileVersion fv = layout.readFileVersion(fs, v);
        if (fv.seq() != CacheLayout.FREE && fv.seq() >= seqCount) {
          uncommittedVersions.add(fs * 2 + v); // never happened; freed once all is checked
        } else if (fv.seq() != CacheLayout.FREE && (best == null || fv.seq() > best.seq())) {
          best = fv;
          bestV = v;
        }
      }
      if (best != null && best.path() == null) {
        throw new CacheFormatException("cache corruption: file slot " + fs + " holds a"
            + " committed version with an invalid path length; `wcfs check` lists the cache"
            + " contents");
      }
      if (best != null) {
        slotsWithFiles.set(fs);
      }
      CachedFile f = best == null ? null : recoverFile(fs, best, bestV);
      if (f == null) {
        if (best != null) {
          freedFileSlots.add(fs);
        }
        freeFileSlots[freeFileSlotCount++] = fs;
      } else {
        byFileSlot[fs] = f;
        files.put(f.key(), f);
      }
    }
    long[] order = new long[nBlocks];
    int live = 0;
    IntList dropped = new IntList();
    for (int s = 0; s < nBlocks; s++) {
      long seq = layout.entrySeq(s);
      if (seq == CacheLayout.FREE) {
        continue;
      }
      long loc = layout.entryLocation(s);
      int fs = CacheLayout.locationFileSlot(loc);
      if (seq < seqCount && (fs < 0 || fs >= fileSlots || !slotsWithFiles.get(fs))) {
        // A file slot is freed only after every entry naming it: this cannot happen.
        throw new CacheFormatException("cache corruption: committed entry " + s + " names file"
            + " slot " + fs + ", which holds no file; `wcfs check` lists the cache contents");
      }
      CachedFile f = seq >= seqCount ? null : byFileSlot[fs];
      long b = CacheLayout.locationBlock(loc);
      if (f == null || b * blockSize >= f.size) {
        dropped.add(s);
        continue;
      }
      int other = f.blocks.get(b);
      if (other >= 0) {
        long otherSeq = layout.entrySeq(other);
        if (otherSeq == seq) {
          throw new CacheFormatException("cache corruption: slots " + other + " and " + s
              + " both hold block " + b + " of " + f.path + " with seq " + seq
              + "; `wcfs check` lists the cache contents");
        }
        if (otherSeq > seq) {
          dropped.add(s);
          continue;
        }
        dropped.add(other);
        state[other] = FREE;
      }
      f.blocks.put(b, s);
      state[s] = COMMITTED;
      if (seq >= (1L << (63 - SLOT_BITS))) {
        throw new CacheFormatException("entry seq " + seq + " out of range at slot " + s);
      }
      order[live++] = seq << SLOT_BITS | s;
    }
    for (CachedFile f : files.values()) {
      if (f.backingLonger) {
        finishTruncate(f);
      }
    }
    for (int i = 0; i < uncommittedVersions.size(); i++) {
      int fv = uncommittedVersions.get(i);
      layout.storeFileVersionFree(fv / 2, fv % 2);
      layout.flushFileVersion(fv / 2, fv % 2);
    }
    for (int i = 0; i < dropped.size(); i++) {
      layout.storeEntryFree(dropped.get(i));
      layout.flushEntry(dropped.get(i));
    }
    mem.commit();
    for (int i = 0; i < freedFileSlots.size(); i++) {
      storeFileSlotFree(freedFileSlots.get(i));
    }
    mem.commit();
    // Oldest first: the LRU order writeback follows.
    Arrays.sort(order, 0, live);
    int liveCount = 0;
    for (int i = 0; i < live; i++) {
      int s = (int) (order[i] & ((1L << SLOT_BITS) - 1));
      if (state[s] == COMMITTED) {
        lruAppend(s);
        liveCount++;
      }
    }
    dirtyCount = liveCount;
    for (int s = nBlocks - 1; s >= 0; s--) {
      if (state[s] == FREE) {
        pushFree(s);
      }
    }
    commitTimes.addLast(new long[] {seqCount - 1, System.nanoTime()});
    // Files with a recorded size but no blocks left: apply the size, release the slot.
    for (CachedFile f : new ArrayList<>(files.values())) {
      if (f.blocks.size() == 0) {
        f.lock.writeLock().lock();
        try {
          copyToBacking(f, new long[0], new int[0], f.size, f.mtimeNanos);
          freeWrittenBack(f, new long[0], new int[0]);
        } catch (IOException e) {
          LOG.warn("{}: could not apply the recorded size {} yet ({}); kept in the cache", f.path,
              f.size, e.toString());
        } finally {
          f.lock.writeLock().unlock();
        }
      }
    }
    if (liveCount > 0 || dropped.size() > 0) {
      LOG.info("recovered {} committed blocks in {} files; dropped {} uncommitted or stale",
          liveCount, files.size(), dropped.size());
    }
  }

  /**
   * A committed file slot: the path it records is the truth (DESIGN.md, "Identity"). A
   * different inode number at that path (network filesystems renumber inodes when remounted;
   * a file replaced behind wcfs's back) is logged and counted, and the blocks go to the path as
   * a block cache's go to its origin. A path that no longer holds a regular file gives the
   * blocks nowhere to go: they go to lost+found. Nothing committed is dropped here.
   */
  private CachedFile recoverFile(int fs, CacheLayout.FileVersion v, int version)
      throws IOException {
    String path = v.path();
    BackingStore.Stat st = backing.stat(path);
    String lost = null;
    boolean sameDevice = st != null && (v.dev() == 0 || CacheLayout.devHint(st.dev()) == v.dev());
    boolean sameInode = sameDevice && st.ino() == v.ino();
    if (v.unlinking() && (st == null || (sameDevice && !sameInode))) {
      // The name is gone, or (same filesystem, no remount in between) holds the file renamed
      // over it: the unlink or rename happened; finish it.
      LOG.info("cache slot {}: the unlink of {} (or rename over it) was interrupted after the"
          + " backing directory changed; finishing it", fs, path);
      return null;
    }
    if (v.unlinking() && !sameInode) {
      // Another filesystem instance (remounted, so inode numbers say nothing): whether the
      // name still holds this file cannot be told, so its data is kept apart.
      lost = "was being unlinked or renamed over when wcfs stopped, and its backing"
          + " filesystem was remounted since";
    } else if (st == null || !st.regularFile()) {
      lost = st == null ? "no longer exists in the backing directory"
          : "is no longer a regular file in the backing directory";
    } else if (files.containsKey(new FileKey(st.dev(), st.ino()))) {
      lost = "now names the same file as another path the cache holds data for";
    }
    if (lost != null) {
      String to = lostAndFoundPath(path, fs, v.seq());
      LOG.error("cache slot {}: {} {}; its committed data (size {}) goes to {} instead",
          fs, path, lost, v.size(), to);
      backing.createFile(to);
      lostAndFound.increment();
      path = to;
      st = backing.stat(path);
      if (st == null) {
        throw new IOException("could not create " + to + " in the backing directory");
      }
    } else if (!sameInode) {
      inodeHintMismatches.increment();
      LOG.warn("cache slot {}: {} was inode {} when cached and is inode {} now (a network"
          + " filesystem remounted, or the file replaced behind wcfs's back); the cache's"
          + " record of the path wins: its committed data goes to {}", fs, path, v.ino(),
          st.ino(), path);
    }
    CachedFile f = new CachedFile(st.dev(), st.ino(), path, v.size(), v.mtimeNanos());
    f.fileSlot = fs;
    f.version = version;
    f.versionSeq = v.seq();
    f.backingLonger = st.size() > v.size();
    return f;
  }

  /** Where a file's blocks go when their path is gone: BACKING/.wcfs-lost+found/. */
  private static String lostAndFoundPath(String path, int fileSlot, long seq) {
    String flat = path.replace('/', '#');
    if (flat.length() > 160) {
      flat = flat.substring(flat.length() - 160);
    }
    return LOST_AND_FOUND + "/" + flat + ".slot" + fileSlot + "-seq" + seq;
  }

  /**
   * Gives a file whose path vanished behind wcfs's back a new one in lost+found: its blocks
   * are written back there (and its file slot keeps the original path, so a crash before that
   * lands them in lost+found again).
   */
  private void moveToLostAndFound(CachedFile f, String why) throws IOException {
    f.lock.writeLock().lock();
    try {
      String from = f.path;
      if (from == null || from.startsWith(LOST_AND_FOUND + "/")) {
        throw new IOException(from + " vanished from the backing directory; its blocks stay in"
            + " the cache");
      }
      String to = lostAndFoundPath(from, f.fileSlot, f.versionSeq);
      backing.createFile(to);
      BackingStore.Stat st = backing.stat(to);
      if (st == null) {
        throw new IOException("could not create " + to + " in the backing directory");
      }
      LOG.error("{} {}; its {} cached blocks (size {}) go to {} instead", from, why,
          f.blocks.size(), f.size, to);
      lostAndFound.increment();
      synchronized (index) {
        if (files.get(f.key()) == f) {
          files.remove(f.key());
        }
        f.dev = st.dev();
        f.ino = st.ino();
        f.path = to;
        files.put(f.key(), f);
      }
      if (f.file != null) {
        f.file.close();
        f.file = null;
      }
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /** A truncate committed before the crash: finish it before anyone reads the old tail. */
  private void finishTruncate(CachedFile f) throws IOException {
    try (BackingStore.BackingFile file = backing.open(f.path)) {
      file.truncate(f.size);
      file.sync();
    }
  }

  // =============================================================================================
  // LRU, errors, stats, close
  // =============================================================================================

  /** Needs index. */
  private void lruAppend(int s) {
    lruPrev[s] = lruTail;
    lruNext[s] = -1;
    if (lruTail >= 0) {
      lruNext[lruTail] = s;
    } else {
      lruHead = s;
    }
    lruTail = s;
  }

  /** Needs index. */
  private void lruRemove(int s) {
    int p = lruPrev[s];
    int n = lruNext[s];
    if (p >= 0) {
      lruNext[p] = n;
    } else {
      lruHead = n;
    }
    if (n >= 0) {
      lruPrev[n] = p;
    } else {
      lruTail = p;
    }
    lruPrev[s] = -1;
    lruNext[s] = -1;
  }

  private void checkError() throws IOException {
    IOException e = error;
    if (e != null) {
      throw new CacheErrorException(e);
    }
  }

  /** Latches the first cache-memory failure: later writes and commits fail, reads go on. */
  private IOException fail(Exception e) {
    IOException io = e instanceof IOException ? (IOException) e : new IOException(e.toString(), e);
    synchronized (index) {
      if (error == null) {
        error = io;
        LOG.error("cache memory failed; writes and fsync now fail with EIO, reads continue", e);
      }
      index.notifyAll();
    }
    return new CacheErrorException(io);
  }

  /** The latched cache error, or null. */
  public IOException error() {
    return error;
  }

  private static long now() {
    java.time.Instant t = java.time.Instant.now();
    return t.getEpochSecond() * 1_000_000_000L + t.getNano();
  }

  public CacheStats stats() {
    synchronized (index) {
      long[] lat = Arrays.copyOf(commitLatencies,
          (int) Math.min(commitLatencyCount, commitLatencies.length));
      Arrays.sort(lat);
      long p50 = lat.length == 0 ? 0 : lat[(int) ((lat.length - 1) * 0.50)];
      long p99 = lat.length == 0 ? 0 : lat[(int) ((lat.length - 1) * 0.99)];
      long age;
      try {
        age = TimeUnit.NANOSECONDS.toMillis(oldestDirtyAgeNanos(System.nanoTime()));
      } catch (IOException e) {
        age = -1;
      }
      return new CacheStats(error == null ? null : error.getMessage(), nBlocks, freeCount,
          writebackInFlight, reads.sum(), readHits.sum(), writes.sum(),
          writeHitsUncommitted.sum(), writeHitsCommitted.sum(), writesAllocated.sum(),
          writesBlocked.sum(), flushes.sum(), dirtyCount, uncommitted.size(), age, p50, p99,
          commitLatencyMax, writtenBack.sum(), writebackErrors.sum(), lastWritebackError,
          blockedWriters, blockSize, mem.describe(), inodeHintMismatches.sum(),
          lostAndFound.sum());
    }
  }

  /** Heap held by the in-memory index (for the memory benchmark). */
  public long indexHeapBytes() {
    synchronized (index) {
      long bytes = state.length + 4L * lruPrev.length + 4L * lruNext.length
          + 4L * freeFileSlots.length + 8L * byFileSlot.length;
      for (CachedFile f : files.values()) {
        bytes += f.blocks.heapBytes() + 128;
      }
      return bytes;
    }
  }

  /** Commits and writes everything back (bounded by {@code timeoutMs}), then stops. */
  public void close(long timeoutMs) throws IOException {
    IOException failure = null;
    try {
      if (error == null) {
        flush(timeoutMs);
      }
    } catch (IOException e) {
      failure = e;
    }
    synchronized (index) {
      closing = true;
      index.notifyAll();
    }
    try {
      writebackThread.join(TimeUnit.SECONDS.toMillis(30));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
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
    synchronized (index) {
      closing = true;
      error = error != null ? error : new IOException("cache abandoned");
      index.notifyAll();
    }
    try {
      writebackThread.join(TimeUnit.SECONDS.toMillis(10));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    closeBackingFiles();
  }

  private void closeBackingFiles() throws IOException {
    for (WritebackScratch b; (b = writebackScratch.poll()) != null; ) {
      b.close();
    }
    synchronized (index) {
      for (CachedFile f : files.values()) {
        if (f.file != null) {
          f.file.close();
          f.file = null;
        }
      }
    }
  }

  @Override
  public void close() throws IOException {
    close(TimeUnit.MINUTES.toMillis(10));
  }
}
