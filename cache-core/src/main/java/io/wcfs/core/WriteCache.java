package io.wcfs.core;

import java.io.IOException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The write cache: dm-writecache's engine over files. Writes land in cache blocks, {@link
 * #commit} makes them durable with one flush/commit sequence of the cache memory, and a writeback
 * thread copies committed blocks to the backing files, making them durable there before freeing
 * the blocks.
 *
 * <h2>Parts</h2>
 *
 * This class is the facade: lifecycle, wiring and the API the filesystem uses. The engine's
 * parts, each owning its state: {@link CacheLayout} (the on-device format), {@link CacheScan}
 * (the one read-only pass recovery and {@code wcfs check} share), {@link SlotTable} (slot
 * states and their transitions; the index monitor), {@link FileRegistry} (files by backing
 * identity and by file slot), {@link Epochs} (open epoch, group commit, {@link DurableFrees},
 * autocommit clock, sticky error) with {@link BackingSyncs} (the backing fsyncs a commit owes
 * first), {@link DataPath} (write, read, truncate) with {@link Zeroing} (punch hole, zero
 * range), {@link Namespace} (every change of names and attributes) with {@link Journal} (the
 * namespace records and their application) and {@link Overlay} (names as the mount shows
 * them), {@link Writeback} (the thread, batches, frees, drain) with {@link WritebackPolicy},
 * {@link BackingCopier} (one file's copy to its backing file, up to its fsync), {@link
 * LostAndFound} and {@link WritebackBackoff} (its failures), {@link Recovery}, and {@link
 * Counters}.
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
 * Order: {@code namespaceLock} -> {@link CachedFile#lock} -> {@code writeThroughLock} ({@link
 * BackingSyncs}) -> {@code commitLock} -> {@code epochLock} (both {@link Epochs}) -> {@code
 * table} (the index monitor, {@link SlotTable}). {@link DirectorySyncs}' monitor is a leaf: it
 * is taken under any of these and takes none.
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

  /** Where blocks whose path is gone are written, relative to the backing root. */
  static final String LOST_AND_FOUND = ".wcfs-lost+found";

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final CacheConfig config;
  private final int blockSize;
  private final int nBlocks;

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
  private final DataPath data;
  private final Zeroing zeroing;
  private final Namespace namespace;
  private final Overlay overlay = new Overlay();
  private final Journal journal;

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
    this.table = new SlotTable(nBlocks);
    this.files = new FileRegistry(table, backing, layout.geometry().fileSlots());
    BackingSyncs backingSyncs = new BackingSyncs(table, files);
    this.epochs = new Epochs(mem, layout, backing, config, table, files, counters.commits,
        backingSyncs);
    this.journal = new Journal(layout, backing, table, files, epochs, overlay, counters.journal);
    this.writeback = new Writeback(mem, layout, backing, config, table, files, epochs,
        backingSyncs, counters.writeback, counters.recovery);
    this.data = new DataPath(mem, layout, config, table, files, epochs, backingSyncs, writeback,
        counters.io, namespaceLock);
    this.zeroing = new Zeroing(layout, files, epochs, backingSyncs, writeback, data,
        namespaceLock);
    this.namespace = new Namespace(backing, table, files, epochs, writeback, data, journal,
        overlay, namespaceLock, counters.journal);
    journal.wire(new JournalApplier(journal, layout, backing, table, files, epochs, overlay,
        counters.journal, writeback, data));
    writeback.wire(journal);
  }

  /**
   * Opens a formatted cache, recovers it and starts writeback. The memory belongs to the cache
   * from here on and is closed by {@link #close}. A cache of format version 1 (an older wcfs)
   * is first written back to {@code backing} and formatted as the current version ({@link
   * LegacyV1Cache}).
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
    return openManual(mem, backing, config, BootId.current());
  }

  /**
   * {@code bootId}: the boot this runs in ({@link BootId}); a test that simulates a power
   * failure passes another one than the cache was mounted in, so only committed data counts.
   */
  static WriteCache openManual(CacheMemory mem, BackingStore backing, CacheConfig config,
      long bootId) throws IOException {
    int lostAndFound = 0;
    if (LegacyV1Cache.isVersion1(mem)) {
      // An older wcfs's cache: written back by its own rules, then formatted as this version
      // (refused unchanged if it is another directory's or corrupted).
      lostAndFound = LegacyV1Cache.convert(mem, backing, bootId);
    }
    CacheLayout layout = CacheLayout.open(mem, backing.identity());
    WriteCache cache = new WriteCache(mem, layout, backing, config);
    cache.counters.recovery.lostAndFound.add(lostAndFound);
    new Recovery(mem, layout, backing, cache.table, cache.files, cache.epochs, cache.writeback,
        cache.journal, cache.counters.recovery).run(bootId);
    cache.writeback.removeStraySpills();
    layout.storeBoot(bootId); // from here on, a recovery in this boot may take stored writes
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

  /** Opens an existing regular file, as the mount shows it. */
  public OpenFile open(String path) throws IOException {
    return new OpenFile(namespace.open(path));
  }

  /**
   * Creates a regular file and opens it: journaled (see {@link Namespace#create}). {@code
   * exclusive} false opens an existing one instead. {@code mode} is final (umask applied).
   */
  public OpenFile create(String path, int mode, int uid, int gid, boolean exclusive)
      throws IOException {
    return new OpenFile(namespace.create(path, mode, uid, gid, exclusive));
  }

  /**
   * What the mount shows at a path whose state the journal decides, or null when the backing
   * directory says (the common case, answered without a lock when nothing is pending).
   */
  public Shown shown(String path) throws IOException {
    CachedFile f = namespace.shown(path);
    return f == null ? null : Shown.of(f);
  }

  /**
   * A file as the mount shows it. {@code backingPath} null: not in the backing directory yet,
   * the attributes here are all there is; else the caller reads the rest there.
   */
  public record Shown(long ino, long size, long mtimeNanos, long atimeNanos, long ctimeNanos,
      int mode, int uid, int gid, String backingPath) {
    static Shown of(CachedFile f) {
      return new Shown(f.shownIno != 0 ? f.shownIno : f.ino, f.size, f.mtimeNanos,
          f.atimeNanos, f.ctimeNanos, f.mode, f.uid, f.gid, f.absent ? null : f.path);
    }
  }

  /**
   * Runs {@code fn} with what the mount shows at {@code path} when the overlay decides, under
   * the file's read lock: writeback renames a file in the backing directory and changes its
   * backing path under the write lock, so a stat of {@link Shown#backingPath} inside {@code
   * fn} finds it. Returns null, without calling {@code fn}, when the backing directory
   * decides; throws NoSuchFileException for a name removed in the overlay.
   */
  public <T> T withShown(String path, ShownFunction<T> fn) throws IOException {
    CachedFile f = namespace.shown(path);
    if (f == null) {
      return null;
    }
    f.lock.readLock().lock();
    try {
      return fn.apply(Shown.of(f));
    } finally {
      f.lock.readLock().unlock();
    }
  }

  /** Tests: file-table slots free now. */
  int freeFileSlots() {
    synchronized (table) {
      return files.freeSlotCount();
    }
  }

  /** Tests: runs in an open between the overlay's answer and the handle taken on its file. */
  void afterOverlayRead(Runnable hook) {
    namespace.afterOverlayRead = hook;
  }

  /** What the mount shows for an open file, whatever its names are by now. */
  public Shown shown(OpenFile h) {
    return Shown.of(h.file);
  }

  /**
   * fstat of an open file's backing file into the struct stat at {@code statBuf}, whatever
   * its names are by now: 0, or -errno (-ENOENT: not in the backing directory yet).
   */
  public int fstat(OpenFile h, long statBuf) throws IOException {
    CachedFile f = h.file;
    f.lock.readLock().lock(); // a spill replaces (and closes) the backing file under the lock
    try {
      return f.absent ? -2 : files.backingFile(f).statInto(statBuf);
    } finally {
      f.lock.readLock().unlock();
    }
  }

  /** Whether the open file's last name is gone (unlinked or renamed over while open). */
  public boolean isUnlinked(OpenFile h) {
    return h.file.dead;
  }

  /** See {@link #withShown}. */
  @FunctionalInterface
  public interface ShownFunction<T> {
    T apply(Shown shown) throws IOException;
  }

  /**
   * When a name change writeback has not applied yet last changed the entries of {@code dir}
   * (epoch nanoseconds), if later than the backing directory's mtime, else 0: the mount shows
   * it as the directory's mtime and ctime.
   */
  public long entriesChangedNanos(String dir, long backingMtimeNanos) {
    return overlay.entriesChangedNanos(dir, backingMtimeNanos);
  }

  /** The entries the overlay decides in {@code dir}: name -> shown (null: removed). */
  public java.util.Map<String, Shown> overlayChildren(String dir) {
    java.util.Map<String, Shown> out = new java.util.HashMap<>();
    for (var e : overlay.children(dir)) {
      CachedFile f = e.getValue().file();
      out.put(e.getKey(), f == null ? null : Shown.of(f));
    }
    return out;
  }

  /** The st_ino the mount shows for a backing file: its own, or the one it was created with. */
  public long shownIno(long dev, long ino) {
    long shown = files.shownIno(dev, ino);
    return shown != 0 ? shown : ino;
  }

  /**
   * Before a change the journal does not make (directories, links, special files, extended
   * attributes): applies the pending records that touch these paths or names below them.
   */
  public void settle(String... paths) throws IOException {
    namespace.settle(paths);
  }

  /** chmod/chown/utimens of a file not in the backing directory yet; false: do it there. */
  public boolean setAttributes(String path, Integer mode, Integer uid, Integer gid,
      Long atimeNanos, Long mtimeNanos) throws IOException {
    return namespace.setAttributes(path, mode, uid, gid, atimeNanos, mtimeNanos);
  }

  public void close(OpenFile h) throws IOException {
    CachedFile f = h.file;
    synchronized (table) {
      if (h.closed) {
        return; // closed twice: the handle counted once
      }
      h.closed = true;
    }
    files.release(f);
    if (f.handles == 0) {
      namespace.closed(f);
    }
  }

  /** The logical size of a file the engine knows, or -1: getattr must show it, not the disk's. */
  public long cachedSize(long dev, long ino) {
    CachedFile f = files.known(dev, ino);
    return f == null ? -1 : f.size;
  }

  /**
   * What the engine keeps of a backing file it knows (its size, mtime and ctime, read at once),
   * or null: getattr shows those over the disk's. One lookup per getattr.
   */
  public Shown cached(long dev, long ino) {
    CachedFile f = files.known(dev, ino);
    return f == null ? null : Shown.of(f);
  }

  public long size(OpenFile h) {
    return h.file.size;
  }

  /** Writes {@code length} bytes from native memory at {@code src} at {@code offset}. */
  public void write(OpenFile h, long offset, long src, long length) throws IOException {
    data.write(h.file, offset, src, length);
  }

  /**
   * Reads up to {@code length} bytes at {@code offset} into native memory at {@code dst}: cached
   * blocks from the cache, the rest from the backing file, never past the logical size.
   *
   * @return bytes read (0 at or past end of file)
   */
  public int read(OpenFile h, long offset, long dst, int length) throws IOException {
    return data.read(h.file, offset, dst, length);
  }

  /** ftruncate: see {@link DataPath#truncate} for the order of its steps. */
  public void truncate(OpenFile h, long size) throws IOException {
    data.truncate(h.file, size);
  }

  /**
   * {@code FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE}: the range reads as zeros, the size
   * stays; see {@link Zeroing} for how, and why a crash cannot bring back the old bytes.
   */
  public void punchHole(OpenFile h, long offset, long length) throws IOException {
    zeroing.punchHole(h.file, offset, length);
  }

  /**
   * {@code FALLOC_FL_ZERO_RANGE}: as {@link #punchHole} but the backing file keeps the range
   * allocated; without {@code keepSize} a range past the end extends the file.
   */
  public void zeroRange(OpenFile h, long offset, long length, boolean keepSize)
      throws IOException {
    zeroing.zeroRange(h.file, offset, length, keepSize);
  }

  // chmod, chown and utimens of a name in the backing directory (one the journal created takes
  // them through setAttributes), after the records on it; a cached file keeps the new mtime.

  public void chmod(String path, int mode) throws IOException {
    namespace.chmod(path, mode);
  }

  /** -1 leaves that id as it is. */
  public void chown(String path, int uid, int gid) throws IOException {
    namespace.chown(path, uid, gid);
  }

  public void setTimes(String path, BackingStore.TimeSpec atime, BackingStore.TimeSpec mtime)
      throws IOException {
    namespace.setTimes(path, atime, mtime);
  }

  // Not journaled: made in the backing directory after the records on the names, durable with
  // the next commit's directory fsyncs (see Namespace).

  public void mkdir(String path, int mode) throws IOException {
    namespace.mkdir(path, mode);
  }

  public void rmdir(String path) throws IOException {
    namespace.rmdir(path);
  }

  public void link(String from, String to) throws IOException {
    namespace.link(from, to);
  }

  public void symlink(String target, String path) throws IOException {
    namespace.symlink(target, path);
  }

  public void mknod(String path, int mode, long rdev) throws IOException {
    namespace.mknod(path, mode, rdev);
  }

  /** unlink through the cache: see {@link Namespace#unlink}. */
  public void unlink(String path) throws IOException {
    namespace.unlink(path);
  }

  /** rename through the cache: see {@link Namespace#rename}. */
  public void rename(String from, String to) throws IOException {
    namespace.rename(from, to);
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
   * Records that {@code path}'s parent directory changed, so that the next commit fsyncs it:
   * the engine does for the names it changes; fs calls it for what it changes on a node itself
   * (a new node's owner and mode, extended attributes).
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

  /**
   * Applies the committed namespace records now, without committing first, as the writeback
   * thread does when they are due (tests without the thread); returns how many.
   */
  int journalStep() throws IOException {
    return journal.apply(false);
  }

  // =============================================================================================
  // Stats, close
  // =============================================================================================

  /**
   * The counters, each group with what the engine's state says now. The state is read under
   * the table lock, so its numbers agree with each other; the commit latencies are sorted
   * outside it.
   */
  public CacheStats stats() {
    String error;
    CacheStats.SpaceStats space;
    String memory;
    long deviceFlushes;
    CacheStats.WritebackStats writebackStats;
    CacheStats.JournalStats journalStats;
    synchronized (table) {
      long age;
      try {
        age = TimeUnit.NANOSECONDS.toMillis(epochs.oldestDirtyAgeNanos(System.nanoTime()));
      } catch (IOException e) {
        age = -1;
      }
      IOException failure = epochs.error();
      error = failure == null ? null : failure.getMessage();
      space = new CacheStats.SpaceStats(blockSize, nBlocks, table.free(), table.dirty(),
          epochs.uncommittedCount(), age, table.writersWaiting());
      memory = mem.describe() + epochs.commitMode();
      deviceFlushes = mem.deviceFlushes();
      writebackStats = counters.writeback.snapshot(writeback.inFlight());
      journalStats = counters.journal.snapshot(journal.capacity(), journal.pendingCount(),
          overlay.size());
    }
    return new CacheStats(error, space, counters.io.snapshot(),
        counters.commits.snapshot(memory, deviceFlushes), writebackStats,
        counters.recovery.snapshot(), journalStats);
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
