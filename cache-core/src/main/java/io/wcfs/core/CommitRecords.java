package io.wcfs.core;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/**
 * The commit record pages of a version 3 cache ({@link CacheLayout}'s class comment says what
 * they prove and why two): one of the helpers {@link CacheLayout} delegates to, knowing the
 * byte offsets of its own pages only; an item's bytes it asks the layout for.
 *
 * <pre>
 * CommitRecord --> Magic ("WCFSCMIT"), Epoch, Count, Checksum, Item^Count    (SIZE bytes)
 * Item         --> Kind << 56 | Index, ItemChecksum (CRC32C of the item's stored bytes)
 * </pre>
 *
 * Checksum is the CRC32C of the record's words but itself. Both the store and the check
 * checksum a copy of the bytes in a native buffer: one routine for both sides.
 */
final class CommitRecords {
  static final int SIZE = 4096;
  /** Record E lives in slot E mod SLOTS. */
  static final int SLOTS = 2;
  /** "WCFSCMIT" read as a little-endian word. */
  static final long MAGIC = 0x54494D4353464357L;
  private static final int MAGIC_AT = 0;
  private static final int EPOCH_AT = 8;
  private static final int COUNT_AT = 16;
  private static final int CHECKSUM_AT = 24;
  private static final int ITEMS_AT = 32;
  /** Items one record lists; a larger epoch commits in two steps. */
  static final int MAX_ITEMS = (SIZE - ITEMS_AT) / 16;
  private static final int BLOCK = 1;
  private static final int FILE_VERSION = 2;
  private static final int RECORD = 3;
  private static final long INDEX_MASK = (1L << 56) - 1;

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final long offset;
  /** Per thread: a record staged or read back, and an item's bytes (grown to a block). */
  private final ThreadLocal<NativeBuffer> page = ThreadLocal.withInitial(() -> new NativeBuffer(SIZE));
  private final ThreadLocal<NativeBuffer> bytes =
      ThreadLocal.withInitial(() -> new NativeBuffer(4096));

  CommitRecords(CacheMemory mem, CacheLayout layout, long offset) {
    this.mem = mem;
    this.layout = layout;
    this.offset = offset;
  }

  /**
   * The committed seq_count given the superblock's: past the newest whole record at or above
   * it (commits are serial: a whole record E proves E and every epoch before it).
   */
  long committedSeqCount(long seqCount) throws IOException {
    long committed = seqCount;
    for (int slot = 0; slot < SLOTS; slot++) {
      long epoch = mem.readLong(slotOffset(slot) + EPOCH_AT);
      if (epoch >= committed && proves(epoch)) {
        committed = epoch + 1;
      }
    }
    return committed;
  }

  /** Whether the record in epoch's slot is epoch's, whole, and every item holds what it lists. */
  private boolean proves(long epoch) throws IOException {
    long base = slotOffset(epoch);
    long count = mem.readLong(base + COUNT_AT);
    if (mem.readLong(base + MAGIC_AT) != MAGIC || mem.readLong(base + EPOCH_AT) != epoch
        || count < 0 || count > MAX_ITEMS) {
      return false;
    }
    int length = ITEMS_AT + 16 * (int) count;
    NativeBuffer b = page.get();
    mem.copyOut(base, b.address(), length);
    if (mem.readLong(base + CHECKSUM_AT) != recordChecksum(b, length)) {
      return false;
    }
    for (int i = 0; i < count; i++) {
      long item = mem.readLong(base + ITEMS_AT + 16L * i);
      int kind = (int) (item >>> 56);
      long index = item & INDEX_MASK;
      if (!inRange(kind, index)
          || itemChecksum(kind, index) != mem.readLong(base + ITEMS_AT + 16L * i + 8)) {
        return false;
      }
    }
    return true;
  }

  /**
   * Stores epoch's record, listing the epoch's blocks, file versions (fileSlot * 2 + v) and
   * journal records with the checksums of what they hold now, as one store, and flushes it;
   * the caller commits. The items must not change until SeqCount passes the epoch durably.
   */
  void store(long epoch, IntList blocks, IntList versions, IntList records) throws IOException {
    int count = blocks.size() + versions.size() + records.size();
    if (count > MAX_ITEMS) {
      throw new IllegalArgumentException(count + " items do not fit in a commit record");
    }
    NativeBuffer b = page.get();
    b.putLong(MAGIC_AT, MAGIC);
    b.putLong(EPOCH_AT, epoch);
    b.putLong(COUNT_AT, count);
    int at = ITEMS_AT;
    at = stage(b, at, BLOCK, blocks);
    at = stage(b, at, FILE_VERSION, versions); // one stored twice is listed twice: same bytes
    at = stage(b, at, RECORD, records);
    b.putLong(CHECKSUM_AT, recordChecksum(b, at));
    long base = slotOffset(epoch);
    mem.copyIn(base, b.address(), at);
    mem.flush(base, at);
  }

  private int stage(NativeBuffer b, int at, int kind, IntList indexes) throws IOException {
    for (int i = 0; i < indexes.size(); i++, at += 16) {
      b.putLong(at, (long) kind << 56 | indexes.get(i));
      b.putLong(at + 8, itemChecksum(kind, indexes.get(i)));
    }
    return at;
  }

  /** Forgets every record (format; recovery, once SeqCount holds what they proved). */
  void clear() throws IOException {
    for (int slot = 0; slot < SLOTS; slot++) {
      mem.assign(slotOffset(slot) + MAGIC_AT, 0);
      mem.flush(slotOffset(slot) + MAGIC_AT, 8);
    }
  }

  private long slotOffset(long epoch) {
    return offset + Math.floorMod(epoch, SLOTS) * (long) SIZE;
  }

  private boolean inRange(int kind, long index) {
    CacheLayout.Geometry g = layout.geometry();
    return switch (kind) {
      case BLOCK -> index < g.nBlocks();
      case FILE_VERSION -> index < 2L * g.fileSlots();
      case RECORD -> index < g.journalRecords();
      default -> false;
    };
  }

  /** The record's words but its checksum, as staged in {@code b} ({@code length} bytes). */
  private static long recordChecksum(NativeBuffer b, int length) {
    ByteBuffer staged = b.asByteBuffer();
    CRC32C crc = new CRC32C();
    crc.update(staged.duplicate().limit(CHECKSUM_AT).position(MAGIC_AT));
    crc.update(staged.duplicate().limit(length).position(ITEMS_AT));
    return crc.getValue();
  }

  /**
   * CRC32C of what an item holds: a block's entry and data; a file version's or journal
   * record's words up to the end of its paths (the bytes after them are left from earlier uses
   * and mean nothing).
   */
  private long itemChecksum(int kind, long index) throws IOException {
    CRC32C crc = new CRC32C();
    switch (kind) {
      case BLOCK -> {
        update(crc, layout.entryOffset(index), CacheLayout.ENTRY_SIZE);
        update(crc, layout.dataOffset(index), layout.geometry().blockSize());
      }
      case FILE_VERSION -> {
        int fileSlot = (int) (index / 2);
        int version = (int) (index % 2);
        update(crc, layout.fileVersionOffset(fileSlot, version),
            layout.fileVersionLength(fileSlot, version));
      }
      case RECORD -> update(crc, layout.recordOffset((int) index),
          layout.recordLength((int) index));
      default -> throw new IllegalArgumentException("commit record item kind " + kind);
    }
    return crc.getValue();
  }

  private void update(CRC32C crc, long at, int length) throws IOException {
    NativeBuffer b = bytes.get();
    if (b.size() < length) {
      b.close();
      b = new NativeBuffer(length);
      bytes.set(b);
    }
    mem.copyOut(at, b.address(), length);
    crc.update(b.asByteBuffer().limit(length));
  }
}
