package io.wcfs.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * The on-device format of a wcfs cache file, and its one entry point: this class knows where
 * each region and each item in it lies, and what the items mean. The words inside one item
 * are kept by a helper it delegates to, which knows nothing else: {@link Superblock}, {@link
 * FileVersionCodec}, {@link JournalRecordCodec} and {@link CommitRecords} (to which it
 * hands their region). All integers are little-endian 64-bit words (the memory is read and
 * written a word at a time, and both supported CPUs are little-endian).
 *
 * <pre>
 * CacheFile   --> Superblock, CommitRecord, CommitRecord, FileTable, Journal, Entries, Data
 * Superblock  --> see {@link Superblock}                   (SUPERBLOCK_SIZE bytes)
 * FileTable   --> FileSlot^FileSlots
 * FileSlot    --> FileVersion, FileVersion             (two versions: copy-on-write)
 * FileVersion --> see {@link FileVersionCodec}             (FILE_VERSION_SIZE bytes)
 * Journal     --> Record^JournalRecords                 (the geometry derives their number)
 * Record      --> see {@link JournalRecordCodec}           (RECORD_SIZE bytes)
 * CommitRecord --> see {@link CommitRecords}               (version 3)
 * Entries     --> Entry^NBlocks
 * Entry       --> Location (FileSlot+1 << 40 | BlockIndex), Seq      (16 bytes)
 * Data        --> Block^NBlocks                        (block-aligned)
 * </pre>
 *
 * <p>Magic is FORMATTING from the first store of a format until its last, which stores MAGIC.
 *
 * <p>A record (entry, file version or journal record) is committed iff {@code seq < SeqCount};
 * a free one has {@code seq = -1}. Seq is the epoch; journal records also carry their own
 * order, since many share one epoch. A file version's path is where the file is in the
 * backing directory as far as applied journal records go (empty while it is ABSENT there:
 * created in the cache, its CREATE record not applied yet); the records not yet applied say
 * what changed since. SeqCount is the single word whose atomic store commits an epoch. The
 * checksum covers every superblock word except SeqCount, which changes on every commit.
 *
 * <p>Commit records (version 3) let an epoch commit with one device flush on a page-cache
 * mapping, where the two-step order (everything durable, then SeqCount) costs two. Commit E
 * stores record E, which lists every entry, file version and journal record E stored with a
 * CRC32C of its stored bytes, in slot E mod 2, and commits it with the epoch at once; SeqCount
 * is not stored. Commits are serial, so a whole record E (its own checksum, and every item
 * holding what it lists) proves E and every epoch before it: the committed seq_count is
 * SeqCount, or E + 1 for the newest record E >= SeqCount that is whole. A crash inside a
 * commit tore something, and the epoch does not count, exactly as if its SeqCount store had
 * not landed; the record before it, in the other slot, still proves its own epoch, whose
 * items nothing has changed: a slot is freed only once SeqCount is durably past its epoch
 * (Epochs settles SeqCount first), blocks are copy-on-write, and a file version an epoch
 * stored is overwritten only once a later epoch's version of the file is committed. The same
 * idea as jbd2's checksummed asynchronous commit block. Version 2 caches have no records and
 * commit in two steps.
 */
public final class CacheLayout {
  static final long MAGIC = 0x4843414353464357L; // "WCFSCACH" read as a little-endian word
  /**
   * Where the magic goes while format runs ("WCFSINIT"): a file holding it was being formatted
   * when wcfs stopped, holds no data, and is formatted again rather than refused as foreign.
   */
  static final long FORMATTING = 0x54494E4953464357L;
  /**
   * 2: the namespace journal and file attributes. A version 1 cache is read by {@link
   * LegacyV1Cache}, never by this class: opening one through {@link WriteCache} writes its data
   * back and formats it as this version.
   */
  public static final int VERSION = 3;
  /** The oldest version this class reads: version 2, without commit records. */
  static final int VERSION_NO_COMMIT_RECORDS = 2;
  static final int SUPERBLOCK_SIZE = 4096;
  static final int FILE_VERSION_SIZE = 256;
  static final int ENTRY_SIZE = 16;
  static final int MAX_PATH_BYTES = FILE_VERSION_SIZE - 56;
  static final int RECORD_SIZE = 512;
  /** Both paths of a record together (a rename's two). */
  static final int MAX_RECORD_PATH_BYTES = RECORD_SIZE - 40;
  static final int MAX_BACKING_PATH_BYTES = SUPERBLOCK_SIZE - 96;
  static final long FREE = -1;
  static final int BLOCK_INDEX_BITS = 40;
  static final long BLOCK_INDEX_MASK = (1L << BLOCK_INDEX_BITS) - 1;

  /** The boot word's offset, for tools and tests that simulate a reboot on a cache file. */
  public static final int BOOT_WORD_OFFSET = Superblock.SB_BOOT;

  /** In a file version's flags: the file is not in the backing directory (yet, or any more). */
  static final int FLAG_ABSENT = 1;
  /** In a file version's flags: every name is gone; the slot waits for its records to go. */
  static final int FLAG_DEAD = 2;

  /** Where each region lies, derived from the file size and block size. */
  public record Geometry(
      int blockSize, long nBlocks, int fileSlots, long fileTableOffset, long journalOffset,
      int journalRecords, long entriesOffset, long dataOffset, long commitRecordsOffset) {

    public long fileSize() {
      return dataOffset + nBlocks * blockSize;
    }

    /** The largest geometry that fits in {@code fileSize} bytes, or nBlocks 0 if none does. */
    public static Geometry fit(long fileSize, int blockSize) {
      return fit(VERSION, fileSize, blockSize);
    }

    static Geometry fit(int version, long fileSize, int blockSize) {
      long n = fileSize / (blockSize + ENTRY_SIZE + 2L * FILE_VERSION_SIZE / 8
          + RECORD_SIZE / 32);
      while (n > 0) {
        Geometry g = of(version, n, blockSize);
        if (g.fileSize() <= fileSize) {
          return g;
        }
        long over = g.fileSize() - fileSize;
        n -= Math.max(1, over / blockSize);
      }
      return of(version, 0, blockSize);
    }

    /**
     * One file slot per 8 blocks (at least 64): a slot is needed per file with dirty blocks.
     * One journal record per 4 file slots, 64 to 8192 (4 MiB): a full journal makes namespace
     * operations wait for writeback, so it only needs to hold what arrives while writeback
     * applies a batch, and pending names beyond that are cheap to apply anyway.
     */
    static Geometry of(long nBlocks, int blockSize) {
      return of(VERSION, nBlocks, blockSize);
    }

    /** Version 2 has no commit records: its file table follows the superblock. */
    static Geometry of(int version, long nBlocks, int blockSize) {
      int fileSlots = (int) Math.min(1 << 20, Math.max(64, nBlocks / 8));
      int records = Math.min(8192, Math.max(64, fileSlots / 4));
      long commitRecords = version >= 3 ? SUPERBLOCK_SIZE : 0;
      long fileTable = SUPERBLOCK_SIZE
          + (version >= 3 ? (long) CommitRecords.SLOTS * CommitRecords.SIZE : 0);
      long journal = align(fileTable + (long) fileSlots * 2 * FILE_VERSION_SIZE, 4096);
      long entries = align(journal + (long) records * RECORD_SIZE, 4096);
      long data = align(entries + nBlocks * ENTRY_SIZE, Math.max(4096, blockSize));
      return new Geometry(blockSize, nBlocks, fileSlots, fileTable, journal, records, entries,
          data, commitRecords);
    }

    /** Whether epochs may commit with one commit and a commit record. */
    public boolean hasCommitRecords() {
      return commitRecordsOffset != 0;
    }

    /** Smallest file that holds one block. */
    public static long minFileSize(int blockSize) {
      return of(1, blockSize).fileSize();
    }
  }

  /** The backing directory a cache belongs to. */
  public record BackingIdentity(long ino, String path) {}

  /**
   * One version of a file slot as stored. {@code ino} and {@code dev} (32 bits of st_dev, 0 when
   * unknown: caches written before it was recorded) are hints about the backing file, not its
   * identity; the path is what recovery goes by.
   */
  public record FileVersion(long seq, long ino, int dev, long size, long mtimeNanos,
      String path, boolean unlinking, int mode, int uid, int gid, int flags) {
    boolean absent() {
      return (flags & FLAG_ABSENT) != 0;
    }

    boolean dead() {
      return (flags & FLAG_DEAD) != 0;
    }
  }

  /** What a journal record does; the file is the one it names (by slot), -1 for none. */
  enum Op {
    /** path1 now names a new file, ABSENT from the backing directory until applied. */
    CREATE,
    /** path1 is removed. */
    UNLINK,
    /** path1 moves to path2, replacing what path2 named. */
    RENAME;

    static final Op[] ALL = values();
  }

  /** A journal record as stored. */
  record Record(int index, long seq, long order, Op op, int fileSlot, String path1,
      String path2, int victimSlot) {}

  /** Whether the paths fit in one record. */
  static boolean recordFits(String path1, String path2) {
    return path1.getBytes(StandardCharsets.UTF_8).length
        + (path2 == null ? 0 : path2.getBytes(StandardCharsets.UTF_8).length)
        <= MAX_RECORD_PATH_BYTES;
  }

  /** The commit rule for entries, file versions (and journal records): seq below seq_count. */
  static boolean isCommitted(long seq, long seqCount) {
    return seq != FREE && seq < seqCount;
  }

  /** st_dev folded to the 32 bits the file table keeps of it; never 0 ("unknown"). */
  static int devHint(long dev) {
    int h = (int) (dev ^ (dev >>> 32));
    return h == 0 ? 1 : h;
  }

  private final CacheMemory mem;
  private final Geometry geometry;
  private final CommitRecords commitRecords;
  /** The superblock's words; this class decides what they must hold. */
  private final Superblock superblock;
  /** The words of a file version; this class knows where each version lies. */
  private final FileVersionCodec fileVersions;
  /** The words of a journal record; this class knows where each record lies. */
  private final JournalRecordCodec records;

  private CacheLayout(CacheMemory mem, Geometry geometry) {
    this.mem = mem;
    this.geometry = geometry;
    this.superblock = new Superblock(mem);
    this.fileVersions = new FileVersionCodec(mem);
    this.records = new JournalRecordCodec(mem);
    this.commitRecords = geometry != null && geometry.hasCommitRecords()
        ? new CommitRecords(mem, this, geometry.commitRecordsOffset()) : null;
  }

  public Geometry geometry() {
    return geometry;
  }

  static long align(long value, long alignment) {
    return (value + alignment - 1) / alignment * alignment;
  }

  /** Refuses block sizes that are not a power of two in [512, 1 MiB]. */
  public static void checkBlockSize(int blockSize) {
    if (blockSize < 512 || blockSize > (1 << 20) || Integer.bitCount(blockSize) != 1) {
      throw new IllegalArgumentException(
          "block size " + blockSize + " is not a power of two between 512 and 1048576;"
              + " use e.g. --block-size 4096");
    }
  }

  /**
   * Writes an empty cache: every entry and file version free, SeqCount 1, then commits, and only
   * then stores the magic (as dm-writecache's init_memory). Before anything else it commits the
   * FORMATTING marker in the magic's place: a crash during format then leaves a file that is
   * recognisably a format in progress, which the next mount formats again, not a file of
   * non-zero words without magic, which it would have to refuse as foreign.
   */
  public static CacheLayout format(CacheMemory mem, int blockSize, BackingIdentity backing)
      throws IOException {
    return format(mem, blockSize, backing, VERSION);
  }

  /** Formats as {@code version} (tests of version 2 caches). */
  static CacheLayout format(CacheMemory mem, int blockSize, BackingIdentity backing, int version)
      throws IOException {
    checkBlockSize(blockSize);
    Geometry g = Geometry.fit(version, mem.size(), blockSize);
    if (g.nBlocks() == 0) {
      throw new CacheFormatException(
          "the cache file is " + mem.size() + " bytes, too small for one " + blockSize
              + "-byte block (" + Geometry.minFileSize(blockSize) + " bytes needed);"
              + " use a larger cache");
    }
    byte[] path = backing.path().getBytes(StandardCharsets.UTF_8);
    if (path.length > MAX_BACKING_PATH_BYTES) {
      throw new CacheFormatException("backing directory path is longer than "
          + MAX_BACKING_PATH_BYTES + " bytes: " + backing.path());
    }
    CacheLayout layout = new CacheLayout(mem, g);
    layout.superblock.storeMagic(FORMATTING);
    mem.commit();
    for (int slot = 0; slot < g.fileSlots(); slot++) {
      for (int v = 0; v < 2; v++) {
        layout.storeFileVersionFree(slot, v);
      }
    }
    for (int r = 0; r < g.journalRecords(); r++) {
      layout.storeRecordFree(r);
    }
    for (long e = 0; e < g.nBlocks(); e++) {
      mem.assign(layout.entryOffset(e), 0);
      mem.assign(layout.entryOffset(e) + 8, FREE);
    }
    layout.superblock.storeZeros();
    if (layout.commitRecords != null) {
      layout.commitRecords.clear();
    }
    layout.superblock.storeFields(version, g, backing, path);
    mem.flush(0, g.entriesOffset() + g.nBlocks() * ENTRY_SIZE);
    mem.commit();
    layout.superblock.storeMagic(MAGIC);
    mem.commit();
    return layout;
  }

  /** What {@link #inspect} found in a cache file's first bytes. */
  public enum Contents {
    ZERO_FILLED,
    /** A format stopped before it stored the magic: holds no data, to be formatted again. */
    FORMAT_INTERRUPTED,
    WCFS_CACHE,
    FOREIGN
  }

  /** Tells a wcfs cache from a zero-filled file and from anything else, reading only. */
  public static Contents inspect(CacheMemory mem) throws IOException {
    long magic = mem.size() >= 8 ? new Superblock(mem).magic() : 0;
    if (magic == MAGIC) {
      return Contents.WCFS_CACHE;
    }
    if (magic == FORMATTING) {
      return Contents.FORMAT_INTERRUPTED;
    }
    for (long off = 0; off + 8 <= mem.size(); off += 8) {
      if (mem.readLong(off) != 0) {
        return Contents.FOREIGN;
      }
    }
    return Contents.ZERO_FILLED;
  }

  /**
   * Validates an existing cache and returns its layout. Each check has its own message naming
   * what was expected and what was found. {@code expected} null skips the backing check ({@code
   * wcfs check}).
   */
  public static CacheLayout open(CacheMemory mem, BackingIdentity expected) throws IOException {
    return new CacheLayout(mem, new Superblock(mem).check(expected));
  }

  /** Recomputes the superblock checksum (tests that corrupt single fields; repair tools). */
  void storeChecksum() throws IOException {
    superblock.storeChecksum();
    mem.commit();
  }

  /** Word offsets of superblock fields, for tests that corrupt them one at a time. */
  static final int[] SUPERBLOCK_FIELDS = Superblock.FIELDS;

  public BackingIdentity backingIdentity() throws IOException {
    return superblock.backingIdentity();
  }

  // ---- seq_count -------------------------------------------------------------------------

  public long seqCount() throws IOException {
    return superblock.seqCount();
  }

  /** The format version of this cache (2: without commit records). */
  int version() {
    return geometry.hasCommitRecords() ? VERSION : VERSION_NO_COMMIT_RECORDS;
  }

  /**
   * The committed seq_count: the superblock's, or past the newest epoch a whole commit record
   * proves (see the class comment). Epochs below it are committed.
   */
  long committedSeqCount() throws IOException {
    return commitRecords == null ? seqCount() : commitRecords.committedSeqCount(seqCount());
  }

  /** The commit record pages; null in a version 2 cache. */
  CommitRecords commitRecords() {
    return commitRecords;
  }

  /** The boot this cache was last mounted in, 0 if never recorded. */
  long boot() throws IOException {
    return superblock.boot();
  }

  /** Records the boot of this mount, flushed and committed. */
  void storeBoot(long boot) throws IOException {
    superblock.storeBoot(boot);
    mem.commit();
  }

  /** The commit point: one atomic store, flushed; the caller commits. */
  void storeSeqCount(long seqCount) throws IOException {
    superblock.storeSeqCount(seqCount);
  }

  // ---- entries ---------------------------------------------------------------------------

  long entryOffset(long slot) {
    return geometry.entriesOffset() + slot * ENTRY_SIZE;
  }

  long dataOffset(long slot) {
    return geometry.dataOffset() + slot * geometry.blockSize();
  }

  static long location(int fileSlot, long blockIndex) {
    return (long) (fileSlot + 1) << BLOCK_INDEX_BITS | blockIndex;
  }

  static int locationFileSlot(long location) {
    return (int) (location >>> BLOCK_INDEX_BITS) - 1;
  }

  static long locationBlock(long location) {
    return location & BLOCK_INDEX_MASK;
  }

  long entryLocation(long slot) throws IOException {
    return mem.readLong(entryOffset(slot));
  }

  long entrySeq(long slot) throws IOException {
    return mem.readLong(entryOffset(slot) + 8);
  }

  /**
   * Location and seq in one copy. A crash can persist either word alone: a new seq without its
   * location belongs to an uncommitted epoch and is discarded; the slot was free before.
   * Location first, seq last, two ordered stores after the block's data: an entry whose seq
   * is in place is complete, which same-boot recovery relies on (a kill between the stores of
   * one copy could otherwise pair a new seq with the slot's previous location).
   */
  void storeEntry(long slot, long location, long seq) throws IOException {
    mem.assign2(entryOffset(slot), location, seq); // one pwrite on a page-cache mapping
  }

  void storeEntryFree(long slot) throws IOException {
    mem.assign(entryOffset(slot) + 8, FREE);
  }

  void flushEntry(long slot) throws IOException {
    mem.flush(entryOffset(slot), ENTRY_SIZE);
  }

  void flushBlock(long slot) throws IOException {
    mem.flush(dataOffset(slot), geometry.blockSize());
  }

  // ---- file table ------------------------------------------------------------------------

  long fileVersionOffset(int fileSlot, int version) {
    return geometry.fileTableOffset() + ((long) fileSlot * 2 + version) * FILE_VERSION_SIZE;
  }

  /** A layout over a memory whose superblock may be invalid (tests, repair). */
  static CacheLayout raw(CacheMemory mem) {
    return new CacheLayout(mem, null);
  }

  static boolean pathFits(String path) {
    return path.getBytes(StandardCharsets.UTF_8).length <= MAX_PATH_BYTES;
  }

  FileVersion readFileVersion(int fileSlot, int version) throws IOException {
    return fileVersions.read(fileVersionOffset(fileSlot, version));
  }

  /** Writes a whole version, seq last (see {@link FileVersionCodec#store}). */
  void storeFileVersion(int fileSlot, int version, long seq, long ino, int dev, long size,
      long mtime, String path, boolean unlinking, int mode, int uid, int gid, int flags)
      throws IOException {
    fileVersions.store(fileVersionOffset(fileSlot, version), seq, ino, dev, size, mtime, path,
        unlinking, mode, uid, gid, flags);
  }

  /** In-place update of an uncommitted version's size and mtime (adjacent words). */
  void storeFileSizeMtime(int fileSlot, int version, long size, long mtime) throws IOException {
    fileVersions.storeSizeMtime(fileVersionOffset(fileSlot, version), size, mtime);
  }

  /** A stored version's meaningful bytes: its words up to the end of its path. */
  int fileVersionLength(int fileSlot, int version) throws IOException {
    return fileVersions.length(fileVersionOffset(fileSlot, version));
  }

  void storeFileVersionFree(int fileSlot, int version) throws IOException {
    fileVersions.storeFree(fileVersionOffset(fileSlot, version));
  }

  void flushFileVersion(int fileSlot, int version) throws IOException {
    mem.flush(fileVersionOffset(fileSlot, version), FILE_VERSION_SIZE);
  }

  // ---- journal ---------------------------------------------------------------------------

  long recordOffset(int index) {
    return geometry.journalOffset() + (long) index * RECORD_SIZE;
  }

  long recordSeq(int index) throws IOException {
    return records.seq(recordOffset(index));
  }

  /** The record at {@code index}, or null if its words are not a record. */
  Record readRecord(int index) throws IOException {
    return records.read(recordOffset(index), index);
  }

  /** Writes a record, seq last (see {@link JournalRecordCodec#store}). */
  void storeRecord(int index, long seq, long order, Op op, int fileSlot, String path1,
      String path2, int victimSlot) throws IOException {
    records.store(recordOffset(index), seq, order, op, fileSlot, path1, path2, victimSlot);
  }

  /** A stored record's meaningful bytes: its words up to the end of its paths. */
  int recordLength(int index) throws IOException {
    return records.length(recordOffset(index));
  }

  void storeRecordFree(int index) throws IOException {
    records.storeFree(recordOffset(index));
  }

  void flushRecord(int index) throws IOException {
    mem.flush(recordOffset(index), RECORD_SIZE);
  }

  // ---- helpers ---------------------------------------------------------------------------

  static byte[] readBytes(CacheMemory mem, long offset, int length) throws IOException {
    byte[] out = new byte[length];
    for (int i = 0; i < length; i += 8) {
      long word = mem.readLong(offset + i);
      for (int j = 0; j < 8 && i + j < length; j++) {
        out[i + j] = (byte) (word >>> (8 * j));
      }
    }
    return out;
  }
}
