package io.wcfs.core;

import static io.wcfs.core.CacheLayout.FILE_VERSION_SIZE;
import static io.wcfs.core.CacheLayout.FORMATTING;
import static io.wcfs.core.CacheLayout.MAGIC;
import static io.wcfs.core.CacheLayout.MAX_BACKING_PATH_BYTES;
import static io.wcfs.core.CacheLayout.SUPERBLOCK_SIZE;
import static io.wcfs.core.CacheLayout.VERSION;
import static io.wcfs.core.CacheLayout.VERSION_NO_COMMIT_RECORDS;
import static io.wcfs.core.CacheLayout.checkBlockSize;
import static io.wcfs.core.CacheLayout.readBytes;

import io.wcfs.core.CacheLayout.BackingIdentity;
import io.wcfs.core.CacheLayout.Geometry;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * The words of the superblock, for {@link CacheLayout}, which decides what they must hold:
 *
 * <pre>
 * Superblock --> Magic, Version|BlockSize, NBlocks, SeqCount, FileSlots|FileVersionSize,
 *                FileTableOffset, EntriesOffset, DataOffset, BackingIno, BackingPathLength,
 *                BackingPath (padded to words), ..., Boot, Checksum   (SUPERBLOCK_SIZE bytes)
 * </pre>
 *
 * <p>The checksum covers every word before it except SeqCount, which changes on every commit,
 * and Boot, which it reads as 0.
 */
final class Superblock {
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
  static final int SB_BOOT = SB_CHECKSUM - 8;

  /** Word offsets of the fields, for tests that corrupt them one at a time. */
  static final int[] FIELDS = {SB_VERSION_BLOCKSIZE, SB_NBLOCKS, SB_FILESLOTS,
      SB_FILETABLE_OFFSET, SB_ENTRIES_OFFSET, SB_DATA_OFFSET, SB_BACKING_INO};

  private final CacheMemory mem;

  Superblock(CacheMemory mem) {
    this.mem = mem;
  }

  long magic() throws IOException {
    return mem.readLong(SB_MAGIC);
  }

  /** Stores the magic word (MAGIC, or FORMATTING while format runs), flushed; caller commits. */
  void storeMagic(long magic) throws IOException {
    storeFlushed(SB_MAGIC, magic);
  }

  /** Zeroes every word but the magic (format, before the fields). */
  void storeZeros() throws IOException {
    for (int off = 8; off < SUPERBLOCK_SIZE; off += 8) {
      mem.assign(off, 0);
    }
  }

  /**
   * Format's fields, seq_count 1, then the checksum over them as it will read once the magic
   * is MAGIC; not flushed (format flushes the superblock with the regions it cleared).
   */
  void storeFields(int version, Geometry g, BackingIdentity backing, byte[] path)
      throws IOException {
    mem.assign(SB_VERSION_BLOCKSIZE, (long) version << 32 | g.blockSize());
    mem.assign(SB_NBLOCKS, g.nBlocks());
    mem.assign(SB_SEQ_COUNT, 1);
    mem.assign(SB_FILESLOTS, (long) g.fileSlots() << 32 | FILE_VERSION_SIZE);
    mem.assign(SB_FILETABLE_OFFSET, g.fileTableOffset());
    mem.assign(SB_ENTRIES_OFFSET, g.entriesOffset());
    mem.assign(SB_DATA_OFFSET, g.dataOffset());
    mem.assign(SB_BACKING_INO, backing.ino());
    mem.assign(SB_BACKING_PATH_LEN, path.length);
    for (int i = 0; i < path.length; i += 8) {
      long word = 0;
      for (int j = 0; j < 8 && i + j < path.length; j++) {
        word |= (path[i + j] & 0xFFL) << (8 * j);
      }
      mem.assign(SB_BACKING_PATH + i, word);
    }
    mem.assign(SB_CHECKSUM, checksum(MAGIC));
  }

  /**
   * Validates the superblock of an existing cache and returns the geometry it describes. Each
   * check has its own message naming what was expected and what was found. {@code expected}
   * null skips the backing check ({@code wcfs check}).
   */
  Geometry check(BackingIdentity expected) throws IOException {
    if (mem.size() < SUPERBLOCK_SIZE) {
      throw new CacheFormatException("cache file is " + mem.size()
          + " bytes, shorter than a superblock (" + SUPERBLOCK_SIZE + "): not a wcfs cache");
    }
    long magic = magic();
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
    int version = version();
    int blockSize = blockSize();
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
    long stored = storedChecksum();
    long computed = checksum(magic);
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
    long nBlocks = nBlocks();
    Geometry expectedGeometry = nBlocks > 0 && nBlocks < (1L << 40)
        ? Geometry.of(version, nBlocks, blockSize) : null;
    long slots = fileSlotsWord();
    Geometry found = expectedGeometry == null ? null : new Geometry(blockSize, nBlocks,
        (int) (slots >>> 32), fileTableOffset(),
        expectedGeometry.journalOffset(), expectedGeometry.journalRecords(),
        entriesOffset(), dataOffset(), expectedGeometry.commitRecordsOffset());
    if (expectedGeometry == null || !expectedGeometry.equals(found)
        || (int) slots != FILE_VERSION_SIZE) {
      throw new CacheFormatException("superblock geometry is inconsistent: found " + found
          + ", expected " + expectedGeometry + " for " + nBlocks + " blocks");
    }
    if (found.fileSize() > mem.size()) {
      throw new CacheFormatException("cache file is " + mem.size() + " bytes but its superblock"
          + " describes " + found.fileSize() + " bytes: the file was truncated");
    }
    long seqCount = seqCount();
    if (seqCount < 1) {
      throw new CacheFormatException("superblock seq_count " + seqCount + " is invalid");
    }
    if (expected != null) {
      BackingIdentity actual = backingIdentity();
      if (!actual.path().equals(expected.path()) || actual.ino() != expected.ino()) {
        throw new CacheFormatException("this cache belongs to backing directory "
            + actual.path() + " (inode " + actual.ino() + "), not " + expected.path()
            + " (inode " + expected.ino() + "); mount it over its own directory, or write it"
            + " back there with `wcfs writeback`, then `wcfs format --force` to reuse it");
      }
    }
    return found;
  }

  int version() throws IOException {
    return (int) (mem.readLong(SB_VERSION_BLOCKSIZE) >>> 32);
  }

  int blockSize() throws IOException {
    return (int) mem.readLong(SB_VERSION_BLOCKSIZE);
  }

  long nBlocks() throws IOException {
    return mem.readLong(SB_NBLOCKS);
  }

  /** FileSlots << 32 | FileVersionSize. */
  long fileSlotsWord() throws IOException {
    return mem.readLong(SB_FILESLOTS);
  }

  long fileTableOffset() throws IOException {
    return mem.readLong(SB_FILETABLE_OFFSET);
  }

  long entriesOffset() throws IOException {
    return mem.readLong(SB_ENTRIES_OFFSET);
  }

  long dataOffset() throws IOException {
    return mem.readLong(SB_DATA_OFFSET);
  }

  BackingIdentity backingIdentity() throws IOException {
    int len = (int) mem.readLong(SB_BACKING_PATH_LEN);
    if (len < 0 || len > MAX_BACKING_PATH_BYTES) {
      throw new CacheFormatException("superblock backing path length " + len + " is invalid");
    }
    return new BackingIdentity(mem.readLong(SB_BACKING_INO), new String(
        readBytes(mem, SB_BACKING_PATH, len), StandardCharsets.UTF_8));
  }

  long storedChecksum() throws IOException {
    return mem.readLong(SB_CHECKSUM);
  }

  /** The checksum of the stored words, reading the magic as {@code magic}. */
  long checksum(long magic) throws IOException {
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

  /** Recomputes the checksum, flushed; the caller commits. */
  void storeChecksum() throws IOException {
    storeFlushed(SB_CHECKSUM, checksum(MAGIC));
  }

  long seqCount() throws IOException {
    return mem.readLong(SB_SEQ_COUNT);
  }

  /** The commit point: one atomic store, flushed; the caller commits. */
  void storeSeqCount(long seqCount) throws IOException {
    storeFlushed(SB_SEQ_COUNT, seqCount);
  }

  long boot() throws IOException {
    return mem.readLong(SB_BOOT);
  }

  /** Stores the boot word, flushed; the caller commits. */
  void storeBoot(long boot) throws IOException {
    storeFlushed(SB_BOOT, boot);
  }

  /** One word, stored with one assign and flushed. */
  private void storeFlushed(int offset, long value) throws IOException {
    mem.assign(offset, value);
    mem.flush(offset, 8);
  }
}
