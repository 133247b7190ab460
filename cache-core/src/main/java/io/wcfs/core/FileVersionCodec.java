package io.wcfs.core;

import io.wcfs.core.CacheLayout.FileVersion;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * The words of one stored file version, for {@link CacheLayout}, which owns where the file
 * table lies and hands this class a version's offset ({@code base}):
 *
 * <pre>
 * FileVersion --> Seq, Ino, Size, MtimeNanos, DevHint << 32 | Unlinking << 31 | PathLength,
 *                 Flags << 32 | Mode, Uid << 32 | Gid, Path (padded)
 * </pre>
 */
final class FileVersionCodec {
  private static final int FV_SEQ = 0;
  private static final int FV_INO = 8;
  private static final int FV_SIZE = 16;
  private static final int FV_MTIME = 24;
  private static final int FV_PATH_LEN = 32;
  private static final int FV_MODE = 40;
  private static final int FV_OWNER = 48;
  private static final int FV_PATH = 56;

  /**
   * Set in a version committed just before wcfs unlinks (or renames over) the file's backing
   * name: recovery then knows that a missing path means the unlink happened, not that the
   * file vanished behind wcfs's back. An older wcfs reads the flag as an invalid path length
   * and refuses the cache rather than misread it.
   */
  private static final long FV_UNLINKING = 1L << 31;

  private final CacheMemory mem;
  /**
   * Versions are staged here and stored with one pmem_memcpy: on x86-64 pmem each assign is a
   * native call (store + flush of its line), and a file version written whole costs one call
   * instead of up to 30. Safe because its seq word decides whether the rest counts, and every
   * word of the copy is an aligned 8-byte store.
   */
  private final ThreadLocal<NativeBuffer> staging =
      ThreadLocal.withInitial(() -> new NativeBuffer(CacheLayout.FILE_VERSION_SIZE));

  FileVersionCodec(CacheMemory mem) {
    this.mem = mem;
  }

  FileVersion read(long base) throws IOException {
    long seq = mem.readLong(base + FV_SEQ);
    if (seq == CacheLayout.FREE) {
      return new FileVersion(CacheLayout.FREE, 0, 0, 0, 0, null, false, 0, 0, 0, 0);
    }
    long lenWord = mem.readLong(base + FV_PATH_LEN);
    int len = (int) (lenWord & 0x7fffffffL);
    String path = len >= 0 && len <= CacheLayout.MAX_PATH_BYTES
        ? new String(CacheLayout.readBytes(mem, base + FV_PATH, len), StandardCharsets.UTF_8)
        : null;
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
  void store(long base, long seq, long ino, int dev, long size, long mtime, String path,
      boolean unlinking, int mode, int uid, int gid, int flags) throws IOException {
    byte[] bytes = path.getBytes(StandardCharsets.UTF_8);
    if (bytes.length > CacheLayout.MAX_PATH_BYTES) {
      // Callers keep such files out of the file table (write-through, names changed now);
      // storing part of the path would let recovery put blocks in another file.
      throw new IllegalArgumentException("a file version holds paths of up to "
          + CacheLayout.MAX_PATH_BYTES + " bytes; " + path + " has " + bytes.length);
    }
    NativeBuffer b = staging.get();
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
    mem.assign(base + FV_SEQ, CacheLayout.FREE);
    mem.copyIn(base + FV_INO, b.address() + FV_INO,
        CacheLayout.align(FV_PATH + bytes.length, 8) - FV_INO);
    mem.assign(base + FV_SEQ, seq);
  }

  /** In-place update of an uncommitted version's size and mtime (adjacent words). */
  void storeSizeMtime(long base, long size, long mtime) throws IOException {
    NativeBuffer b = staging.get();
    b.putLong(0, size);
    b.putLong(8, mtime);
    mem.copyIn(base + FV_SIZE, b.address(), 16);
  }

  /** A stored version's meaningful bytes: its words up to the end of its path. */
  int length(long base) throws IOException {
    long len = mem.readLong(base + FV_PATH_LEN) & 0x7fffffffL;
    return FV_PATH + (int) CacheLayout.align(Math.min(len, CacheLayout.MAX_PATH_BYTES), 8);
  }

  void storeFree(long base) throws IOException {
    mem.assign(base + FV_SEQ, CacheLayout.FREE);
  }
}
