package io.wcfs.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * The on-device format of a wcfs cache file; the only class that knows byte offsets but for
 * the commit record pages' own, which {@link CommitRecords} keeps. All integers
 * are little-endian 64-bit words (the memory is read and written a word at a time, and both
 * supported CPUs are little-endian).
 *
 * <pre>
 * CacheFile   --> Superblock, CommitRecord, CommitRecord, FileTable, Journal, Entries, Data
 * Superblock  --> Magic, Version|BlockSize, NBlocks, SeqCount, FileSlots|FileVersionSize,
 *                 FileTableOffset, EntriesOffset, DataOffset, BackingIno, BackingPathLength,
 *                 BackingPath (padded to words), ..., Checksum      (SUPERBLOCK_SIZE bytes)
 * FileTable   --> FileSlot^FileSlots
 * FileSlot    --> FileVersion, FileVersion             (two versions: copy-on-write)
 * FileVersion --> Seq, Ino, Size, MtimeNanos, DevHint << 32 | Unlinking << 31 | PathLength,
 *                 Flags << 32 | Mode, Uid << 32 | Gid, Path (padded)
 *                                                       (FILE_VERSION_SIZE bytes)
 * Journal     --> Record^JournalRecords                 (the geometry derives their number)
 * Record      --> Seq, Order, Op << 32 | FileSlot + 1, Path1Length << 32 | Path2Length,
 *                 VictimSlot + 1, Path1, Path2 (packed, padded)   (RECORD_SIZE bytes)
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

  // Superblock word offsets.
  private static final int SB_MAGIC = 0;
  private static final int SB_VERSION_BLOCKSIZE = 8;
  private static final int SB_NBLOCKS = 16;
  private static final int SB_SEQ_COUNT = 24;
  private static final int SB_FILESLOTS = 32;
  private static final int SB_FILETABLE_OFFSET = 40;
  private static final int SB_ENTRIES_OFFSET = 48;
  private static final int SB_DATA_OFFSET = 56;
  private static final int SB_BACKING_INO = 64;
  private static final int SB_BACKING_PATH_LEN = 72;
  private static final int SB_BACKING_PATH = 80;
  private static final int SB_CHECKSUM = SUPERBLOCK_SIZE - 8;
  /**
   * The boot the cache was last mounted in ({@link BootId}), 0 if unknown. Like seq_count it
   * changes after format, so the checksum reads it as 0 (which it was in older caches).
   */
  private static final int SB_BOOT = SB_CHECKSUM - 8;
  /** The boot word's offset, for tools and tests that simulate a reboot on a cache file. */
  public static final int BOOT_WORD_OFFSET = SB_BOOT;

  // File version word offsets.
  private static final int FV_SEQ = 0;
  private static final int FV_INO = 8;
  private static final int FV_SIZE = 16;
  private static final int FV_MTIME = 24;
  private static final int FV_PATH_LEN = 32;
  private static final int FV_MODE = 40;
  private static final int FV_OWNER = 48;
  private static final int FV_PATH = 56;
  /** In FV_MODE's high word: the file is not in the backing directory (yet, or any more). */
  static final int FLAG_ABSENT = 1;
  /** In FV_MODE's high word: every name is gone; the slot waits for its records to go. */
  static final int FLAG_DEAD = 2;

  // Journal record word offsets.
  private static final int R_SEQ = 0;
  private static final int R_ORDER = 8;
  private static final int R_OP = 16;
  private static final int R_LENS = 24;
  /**
   * The file whose last name the record removes (an unlink's file, a rename's victim), -1 for
   * none: recovery takes the record's word for that file's death, whether or not the DEAD mark
   * stored after it survived.
   */
  private static final int R_VICTIM = 32;
  private static final int R_PATHS = 40;

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

  /** One version of a file slot as stored. */
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

  /**
   * Set in a version committed just before wcfs unlinks (or renames over) the file's backing
   * name: recovery then knows that a missing path means the unlink happened, not that the
   * file vanished behind wcfs's back. An older wcfs reads the flag as an invalid path length
   * and refuses the cache rather than misread it.
   */
  private static final long FV_UNLINKING = 1L << 31;

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
  /**
   * Records are staged here and stored with one pmem_memcpy: on x86-64 pmem each assign is a
   * native call (store + flush of its line), and an entry or file version written whole costs
   * one call instead of up to 30. Safe because each record's seq word decides whether the rest
   * counts, and every word of the copy is an aligned 8-byte store.
   */
  private final ThreadLocal<io.wcfs.nativ.NativeBuffer> staging =
      ThreadLocal.withInitial(() -> new io.wcfs.nativ.NativeBuffer(FILE_VERSION_SIZE));

  private CacheLayout(CacheMemory mem, Geometry geometry) {
    this.mem = mem;
    this.geometry = geometry;
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
    mem.assign(SB_MAGIC, FORMATTING);
    mem.flush(SB_MAGIC, 8);
    mem.commit();
    for (int slot = 0; slot < g.fileSlots(); slot++) {
      for (int v = 0; v < 2; v++) {
        mem.assign(layout.fileVersionOffset(slot, v) + FV_SEQ, FREE);
      }
    }
    for (int r = 0; r < g.journalRecords(); r++) {
      mem.assign(layout.recordOffset(r) + R_SEQ, FREE);
    }
    for (long e = 0; e < g.nBlocks(); e++) {
      mem.assign(layout.entryOffset(e), 0);
      mem.assign(layout.entryOffset(e) + 8, FREE);
    }
    for (int off = 8; off < SUPERBLOCK_SIZE; off += 8) {
      mem.assign(off, 0);
    }
    if (layout.commitRecords != null) {
      layout.commitRecords.clear();
    }
    mem.assign(SB_VERSION_BLOCKSIZE, (long) version << 32 | blockSize);
    mem.assign(SB_NBLOCKS, g.nBlocks());
    mem.assign(SB_SEQ_COUNT, 1);
    mem.assign(SB_FILESLOTS, (long) g.fileSlots() << 32 | FILE_VERSION_SIZE);
    mem.assign(SB_FILETABLE_OFFSET, g.fileTableOffset());
    mem.assign(SB_ENTRIES_OFFSET, g.entriesOffset());
    mem.assign(SB_DATA_OFFSET, g.dataOffset());
    mem.assign(SB_BACKING_INO, backing.ino());
    mem.assign(SB_BACKING_PATH_LEN, path.length);
    layout.assignBytes(SB_BACKING_PATH, path);
    mem.assign(SB_CHECKSUM, layout.superblockChecksum(MAGIC));
    mem.flush(0, g.entriesOffset() + g.nBlocks() * ENTRY_SIZE);
    mem.commit();
    mem.assign(SB_MAGIC, MAGIC);
    mem.flush(SB_MAGIC, 8);
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
    if (mem.size() >= 8 && mem.readLong(SB_MAGIC) == MAGIC) {
      return Contents.WCFS_CACHE;
    }
    if (mem.size() >= 8 && mem.readLong(SB_MAGIC) == FORMATTING) {
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
    if (mem.size() < SUPERBLOCK_SIZE) {
      throw new CacheFormatException("cache file is " + mem.size()
          + " bytes, shorter than a superblock (" + SUPERBLOCK_SIZE + "): not a wcfs cache");
    }
    long magic = mem.readLong(SB_MAGIC);
    if (magic == FORMATTING) {
      throw new CacheFormatException("this cache's format was interrupted (wcfs stopped during"
          + " `wcfs format` or the first mount) and it holds no data; mount it, or run `wcfs"
          + " format`, to format it again");
    }
    if (magic != MAGIC) {
      throw new CacheFormatException(String.format(
          "bad magic 0x%016x (expected 0x%016x): this file is not a wcfs cache; pick another"
              + " file, or zero it / delete it to let wcfs format a new one", magic, MAGIC));
    }
    long vb = mem.readLong(SB_VERSION_BLOCKSIZE);
    int version = (int) (vb >>> 32);
    int blockSize = (int) vb;
    if (version == 1) {
      // Only LegacyV1Cache reads version 1 (WriteCache's open converts it first).
      throw new CacheFormatException("this cache was written by wcfs format version 1 (no"
          + " namespace journal); a mount (or `wcfs writeback`) writes its data back and formats"
          + " it as version " + VERSION + ". Nothing in it was changed");
    }
    if (version != VERSION && version != VERSION_NO_COMMIT_RECORDS) {
      throw new CacheFormatException("cache format version " + version
          + " is not supported (this wcfs reads versions " + VERSION_NO_COMMIT_RECORDS + " and "
          + VERSION + "); it was written by a newer wcfs: mount it with that one");
    }
    CacheLayout probe = new CacheLayout(mem, null);
    long stored = mem.readLong(SB_CHECKSUM);
    long computed = probe.superblockChecksum(magic);
    if (stored != computed) {
      throw new CacheFormatException(String.format(
          "superblock checksum mismatch (stored 0x%08x, computed 0x%08x): the cache file's"
              + " header is corrupted; `wcfs check` shows what is left", stored, computed));
    }
    try {
      checkBlockSize(blockSize);
    } catch (IllegalArgumentException e) {
      throw new CacheFormatException("superblock block size: " + e.getMessage());
    }
    long nBlocks = mem.readLong(SB_NBLOCKS);
    Geometry expectedGeometry = nBlocks > 0 && nBlocks < (1L << 40)
        ? Geometry.of(version, nBlocks, blockSize) : null;
    long slots = mem.readLong(SB_FILESLOTS);
    Geometry found = expectedGeometry == null ? null : new Geometry(blockSize, nBlocks,
        (int) (slots >>> 32), mem.readLong(SB_FILETABLE_OFFSET),
        expectedGeometry.journalOffset(), expectedGeometry.journalRecords(),
        mem.readLong(SB_ENTRIES_OFFSET), mem.readLong(SB_DATA_OFFSET),
        expectedGeometry.commitRecordsOffset());
    if (expectedGeometry == null || !expectedGeometry.equals(found)
        || (int) slots != FILE_VERSION_SIZE) {
      throw new CacheFormatException("superblock geometry is inconsistent: found " + found
          + ", expected " + expectedGeometry + " for " + nBlocks + " blocks");
    }
    if (found.fileSize() > mem.size()) {
      throw new CacheFormatException("cache file is " + mem.size() + " bytes but its superblock"
          + " describes " + found.fileSize() + " bytes: the file was truncated");
    }
    CacheLayout layout = new CacheLayout(mem, found);
    long seqCount = layout.seqCount();
    if (seqCount < 1) {
      throw new CacheFormatException("superblock seq_count " + seqCount + " is invalid");
    }
    if (expected != null) {
      BackingIdentity actual = layout.backingIdentity();
      if (!actual.path().equals(expected.path()) || actual.ino() != expected.ino()) {
        throw new CacheFormatException("this cache belongs to backing directory "
            + actual.path() + " (inode " + actual.ino() + "), not " + expected.path()
            + " (inode " + expected.ino() + "); mount it over its own directory, or write it"
            + " back there with `wcfs writeback`, then `wcfs format --force` to reuse it");
      }
    }
    return layout;
  }

  /** Recomputes the superblock checksum (tests that corrupt single fields; repair tools). */
  void storeChecksum() throws IOException {
    mem.assign(SB_CHECKSUM, superblockChecksum(MAGIC));
    mem.flush(SB_CHECKSUM, 8);
    mem.commit();
  }

  /** Word offsets of superblock fields, for tests that corrupt them one at a time. */
  static final int[] SUPERBLOCK_FIELDS = {SB_VERSION_BLOCKSIZE, SB_NBLOCKS, SB_FILESLOTS,
      SB_FILETABLE_OFFSET, SB_ENTRIES_OFFSET, SB_DATA_OFFSET, SB_BACKING_INO};

  public BackingIdentity backingIdentity() throws IOException {
    int len = (int) mem.readLong(SB_BACKING_PATH_LEN);
    if (len < 0 || len > MAX_BACKING_PATH_BYTES) {
      throw new CacheFormatException("superblock backing path length " + len + " is invalid");
    }
    return new BackingIdentity(mem.readLong(SB_BACKING_INO),
        new String(readBytes(SB_BACKING_PATH, len), StandardCharsets.UTF_8));
  }

  private long superblockChecksum(long magic) throws IOException {
    CRC32C crc = new CRC32C();
    byte[] word = new byte[8];
    for (int off = 0; off < SB_CHECKSUM; off += 8) {
      if (off == SB_SEQ_COUNT) {
        continue;
      }
      long v = off == SB_MAGIC ? magic : off == SB_BOOT ? 0 : mem.readLong(off);
      for (int i = 0; i < 8; i++) {
        word[i] = (byte) (v >>> (8 * i));
      }
      crc.update(word);
    }
    return crc.getValue();
  }

  // ---- seq_count -------------------------------------------------------------------------

  public long seqCount() throws IOException {
    return mem.readLong(SB_SEQ_COUNT);
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
    return mem.readLong(SB_BOOT);
  }

  /** Records the boot of this mount, flushed and committed. */
  void storeBoot(long boot) throws IOException {
    mem.assign(SB_BOOT, boot);
    mem.flush(SB_BOOT, 8);
    mem.commit();
  }

  /** The commit point: one atomic store, flushed; the caller commits. */
  void storeSeqCount(long seqCount) throws IOException {
    mem.assign(SB_SEQ_COUNT, seqCount);
    mem.flush(SB_SEQ_COUNT, 8);
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
   */
  /**
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
    long base = fileVersionOffset(fileSlot, version);
    long seq = mem.readLong(base + FV_SEQ);
    if (seq == FREE) {
      return new FileVersion(FREE, 0, 0, 0, 0, null, false, 0, 0, 0, 0);
    }
    long lenWord = mem.readLong(base + FV_PATH_LEN);
    int len = (int) (lenWord & 0x7fffffffL);
    String path = len >= 0 && len <= MAX_PATH_BYTES
        ? new String(readBytes(base + FV_PATH, len), StandardCharsets.UTF_8) : null;
    long modeWord = mem.readLong(base + FV_MODE);
    long owner = mem.readLong(base + FV_OWNER);
    return new FileVersion(seq, mem.readLong(base + FV_INO), (int) (lenWord >>> 32),
        mem.readLong(base + FV_SIZE),
        mem.readLong(base + FV_MTIME), path, (lenWord & FV_UNLINKING) != 0, (int) modeWord,
        (int) (owner >>> 32), (int) owner, (int) (modeWord >>> 32));
  }

  /**
   * Writes a whole version in one copy. Torn, it is harmless: with the new seq it is
   * uncommitted, with the old seq it is older than the slot's other version, so it loses.
   */
  void storeFileVersion(int fileSlot, int version, long seq, long ino, int dev, long size,
      long mtime, String path, boolean unlinking, int mode, int uid, int gid, int flags)
      throws IOException {
    byte[] bytes = path.getBytes(StandardCharsets.UTF_8);
    io.wcfs.nativ.NativeBuffer b = staging.get();
    b.putLong(FV_SEQ, seq);
    b.putLong(FV_INO, ino);
    b.putLong(FV_SIZE, size);
    b.putLong(FV_MTIME, mtime);
    b.putLong(FV_PATH_LEN, (long) dev << 32 | (unlinking ? FV_UNLINKING : 0) | bytes.length);
    b.putLong(FV_MODE, (long) flags << 32 | (mode & 0xFFFFFFFFL));
    b.putLong(FV_OWNER, (long) uid << 32 | (gid & 0xFFFFFFFFL));
    if ((bytes.length & 7) != 0) {
      b.putLong(FV_PATH + (bytes.length & ~7), 0); // zero the tail of the last path word
    }
    b.put(FV_PATH, bytes, 0, bytes.length);
    // The seq word last, after the rest: a daemon killed in the middle leaves a version that
    // is free (or its older self), never one whose seq claims fields it does not have yet;
    // same-boot recovery relies on this (see Recovery). The old seq goes first for the same
    // reason when the slot held a version of this epoch already.
    long base = fileVersionOffset(fileSlot, version);
    mem.assign(base + FV_SEQ, FREE);
    mem.copyIn(base + FV_INO, b.address() + FV_INO, align(FV_PATH + bytes.length, 8) - FV_INO);
    mem.assign(base + FV_SEQ, seq);
  }

  /** In-place update of an uncommitted version's size and mtime (adjacent words). */
  void storeFileSizeMtime(int fileSlot, int version, long size, long mtime) throws IOException {
    io.wcfs.nativ.NativeBuffer b = staging.get();
    b.putLong(0, size);
    b.putLong(8, mtime);
    mem.copyIn(fileVersionOffset(fileSlot, version) + FV_SIZE, b.address(), 16);
  }

  /** A stored version's meaningful bytes: its words up to the end of its path. */
  int fileVersionLength(int fileSlot, int version) throws IOException {
    long len = mem.readLong(fileVersionOffset(fileSlot, version) + FV_PATH_LEN) & 0x7fffffffL;
    return FV_PATH + (int) align(Math.min(len, MAX_PATH_BYTES), 8);
  }

  void storeFileVersionFree(int fileSlot, int version) throws IOException {
    mem.assign(fileVersionOffset(fileSlot, version) + FV_SEQ, FREE);
  }

  void flushFileVersion(int fileSlot, int version) throws IOException {
    mem.flush(fileVersionOffset(fileSlot, version), FILE_VERSION_SIZE);
  }

  // ---- journal ---------------------------------------------------------------------------

  long recordOffset(int index) {
    return geometry.journalOffset() + (long) index * RECORD_SIZE;
  }

  long recordSeq(int index) throws IOException {
    return mem.readLong(recordOffset(index) + R_SEQ);
  }

  Record readRecord(int index) throws IOException {
    long base = recordOffset(index);
    long seq = mem.readLong(base + R_SEQ);
    long opWord = mem.readLong(base + R_OP);
    long lens = mem.readLong(base + R_LENS);
    int op = (int) (opWord >>> 32);
    int len1 = (int) (lens >>> 32);
    int len2 = (int) lens;
    if (op < 0 || op >= Op.ALL.length || len1 < 0 || len2 < -1
        || len1 + Math.max(0, len2) > MAX_RECORD_PATH_BYTES) {
      return null; // not a record: a finding for the scan
    }
    byte[] paths = readBytes(base + R_PATHS, len1 + Math.max(0, len2));
    return new Record(index, seq, mem.readLong(base + R_ORDER), Op.ALL[op],
        (int) opWord - 1, new String(paths, 0, len1, StandardCharsets.UTF_8),
        len2 < 0 ? null : new String(paths, len1, len2, StandardCharsets.UTF_8),
        (int) mem.readLong(base + R_VICTIM) - 1);
  }

  /**
   * Writes a record in one copy, seq last (as file versions): a record whose seq is stored is
   * complete, which same-boot recovery relies on.
   */
  void storeRecord(int index, long seq, long order, Op op, int fileSlot, String path1,
      String path2, int victimSlot) throws IOException {
    byte[] p1 = path1.getBytes(StandardCharsets.UTF_8);
    byte[] p2 = path2 == null ? new byte[0] : path2.getBytes(StandardCharsets.UTF_8);
    io.wcfs.nativ.NativeBuffer b = recordStaging.get();
    b.putLong(R_ORDER, order);
    b.putLong(R_OP, (long) op.ordinal() << 32 | (fileSlot + 1));
    b.putLong(R_LENS, (long) p1.length << 32 | (path2 == null ? 0xFFFFFFFFL : p2.length));
    b.putLong(R_VICTIM, victimSlot + 1);
    int n = p1.length + p2.length;
    if ((n & 7) != 0) {
      b.putLong(R_PATHS + (n & ~7), 0);
    }
    b.put(R_PATHS, p1, 0, p1.length);
    b.put(R_PATHS + p1.length, p2, 0, p2.length);
    long base = recordOffset(index);
    mem.assign(base + R_SEQ, FREE);
    mem.copyIn(base + R_ORDER, b.address() + R_ORDER, align(R_PATHS + n, 8) - R_ORDER);
    mem.assign(base + R_SEQ, seq);
  }

  /** A stored record's meaningful bytes: its words up to the end of its paths. */
  int recordLength(int index) throws IOException {
    long lens = mem.readLong(recordOffset(index) + R_LENS);
    long n = Math.max(0, (int) (lens >>> 32)) + Math.max(0, (int) lens);
    return R_PATHS + (int) align(Math.min(n, MAX_RECORD_PATH_BYTES), 8);
  }

  void storeRecordFree(int index) throws IOException {
    mem.assign(recordOffset(index) + R_SEQ, FREE);
  }

  void flushRecord(int index) throws IOException {
    mem.flush(recordOffset(index), RECORD_SIZE);
  }

  private final ThreadLocal<io.wcfs.nativ.NativeBuffer> recordStaging =
      ThreadLocal.withInitial(() -> new io.wcfs.nativ.NativeBuffer(RECORD_SIZE));

  // ---- helpers ---------------------------------------------------------------------------

  private void assignBytes(long offset, byte[] bytes) throws IOException {
    for (int i = 0; i < bytes.length; i += 8) {
      long word = 0;
      for (int j = 0; j < 8 && i + j < bytes.length; j++) {
        word |= (bytes[i + j] & 0xFFL) << (8 * j);
      }
      mem.assign(offset + i, word);
    }
  }

  private byte[] readBytes(long offset, int length) throws IOException {
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
