package io.wcfs.core;

import io.wcfs.core.CacheLayout.Op;
import io.wcfs.core.CacheLayout.Record;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * The words of one stored namespace-journal record, for {@link CacheLayout}, which owns where
 * the journal lies and hands this class a record's offset ({@code base}):
 *
 * <pre>
 * Record --> Seq, Order, Op << 32 | FileSlot + 1, Path1Length << 32 | Path2Length,
 *            VictimSlot + 1, Path1, Path2 (packed, padded)
 * </pre>
 */
final class JournalRecordCodec {
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

  private final CacheMemory mem;
  /** Records are staged and stored with one copy, as file versions (see FileVersionCodec). */
  private final ThreadLocal<NativeBuffer> staging =
      ThreadLocal.withInitial(() -> new NativeBuffer(CacheLayout.RECORD_SIZE));

  JournalRecordCodec(CacheMemory mem) {
    this.mem = mem;
  }

  long seq(long base) throws IOException {
    return mem.readLong(base + R_SEQ);
  }

  /** The record stored at {@code base}, or null if its words are not a record. */
  Record read(long base, int index) throws IOException {
    long seq = mem.readLong(base + R_SEQ);
    long opWord = mem.readLong(base + R_OP);
    long lens = mem.readLong(base + R_LENS);
    int op = (int) (opWord >>> 32);
    int len1 = (int) (lens >>> 32);
    int len2 = (int) lens;
    if (op < 0 || op >= Op.ALL.length || len1 < 0 || len2 < -1
        || len1 + Math.max(0, len2) > CacheLayout.MAX_RECORD_PATH_BYTES) {
      return null; // not a record: a finding for the scan
    }
    byte[] paths = CacheLayout.readBytes(mem, base + R_PATHS, len1 + Math.max(0, len2));
    return new Record(index, seq, mem.readLong(base + R_ORDER), Op.ALL[op],
        (int) opWord - 1, new String(paths, 0, len1, StandardCharsets.UTF_8),
        len2 < 0 ? null : new String(paths, len1, len2, StandardCharsets.UTF_8),
        (int) mem.readLong(base + R_VICTIM) - 1);
  }

  /**
   * Writes a record in one copy, seq last (as file versions): a record whose seq is stored is
   * complete, which same-boot recovery relies on.
   */
  void store(long base, long seq, long order, Op op, int fileSlot, String path1, String path2,
      int victimSlot) throws IOException {
    byte[] p1 = path1.getBytes(StandardCharsets.UTF_8);
    byte[] p2 = path2 == null ? new byte[0] : path2.getBytes(StandardCharsets.UTF_8);
    if (p1.length + p2.length > CacheLayout.MAX_RECORD_PATH_BYTES) {
      throw new IllegalArgumentException("a journal record holds paths of up to "
          + CacheLayout.MAX_RECORD_PATH_BYTES + " bytes together; " + path1
          + (path2 == null ? "" : " and " + path2) + " have " + (p1.length + p2.length));
    }
    NativeBuffer b = staging.get();
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
    mem.assign(base + R_SEQ, CacheLayout.FREE);
    mem.copyIn(base + R_ORDER, b.address() + R_ORDER,
        CacheLayout.align(R_PATHS + n, 8) - R_ORDER);
    mem.assign(base + R_SEQ, seq);
  }

  /** A stored record's meaningful bytes: its words up to the end of its paths. */
  int length(long base) throws IOException {
    long lens = mem.readLong(base + R_LENS);
    long n = Math.max(0, (int) (lens >>> 32)) + Math.max(0, (int) lens);
    return R_PATHS + (int) CacheLayout.align(Math.min(n, CacheLayout.MAX_RECORD_PATH_BYTES), 8);
  }

  void storeFree(long base) throws IOException {
    mem.assign(base + R_SEQ, CacheLayout.FREE);
  }
}
