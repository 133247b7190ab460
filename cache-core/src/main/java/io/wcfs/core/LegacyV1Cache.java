package io.wcfs.core;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.CRC32C;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A cache in format version 1 (wcfs before the namespace journal), read only, and written back
 * to its backing directory so that the cache can be formatted as the current version.
 *
 * <h2>FROZEN: the version 1 format</h2>
 *
 * Every offset and rule below is version 1's as the last wcfs that wrote it had them
 * (CacheLayout, CacheScan and Recovery before commit 1040cf0) and must never change with the
 * current format: this class exists to read caches written by that wcfs.
 *
 * <pre>
 * CacheFile   --> Superblock, FileTable, Entries, Data            (no journal)
 * Superblock  --> as version 2 (same words, same checksum rule)
 * FileVersion --> Seq, Ino, Size, MtimeNanos, DevHint << 32 | Unlinking << 31 | PathLength,
 *                 Path (padded)                      (256 bytes; the path at byte 40, not 56)
 * Entry       --> Location (FileSlot+1 << 40 | BlockIndex), Seq      (16 bytes)
 * </pre>
 *
 * <p>Rules: a record is committed iff {@code seq != -1 && seq < seq_count}; in the boot the
 * cache was last mounted in (only its daemon stopped) version 1 also took the open epoch's
 * records ({@code seq == seq_count}), whose seq word is stored last, and so does this. Of a
 * file slot's two versions the newest committed counts; of a block's committed entries the
 * highest seq; entries at or past the file's recorded size are ignored. A file whose version
 * carries the unlinking mark and whose path is gone (or holds another file of the same
 * filesystem) was unlinked: it is dropped. Any other file whose path no longer holds a regular
 * file, or holds one already claimed by another slot, goes to lost+found, as Recovery does.
 *
 * <p>{@link #read} only reads; {@link #writeBack} only writes to the backing directory. A
 * crash in the middle leaves the cache as it was, and the next open writes the same bytes
 * again.
 */
final class LegacyV1Cache {
  private static final Logger LOG = LoggerFactory.getLogger(LegacyV1Cache.class);

  // ---- FROZEN: version 1 constants and offsets ----------------------------------------------
  static final int VERSION = 1;
  private static final long MAGIC = 0x4843414353464357L; // "WCFSCACH", as in version 2
  private static final int SUPERBLOCK_SIZE = 4096;
  private static final int FILE_VERSION_SIZE = 256;
  private static final int ENTRY_SIZE = 16;
  private static final int MAX_PATH_BYTES = FILE_VERSION_SIZE - 40;
  private static final int MAX_BACKING_PATH_BYTES = SUPERBLOCK_SIZE - 96;
  private static final long FREE = -1;
  private static final int BLOCK_INDEX_BITS = 40;
  private static final long BLOCK_INDEX_MASK = (1L << BLOCK_INDEX_BITS) - 1;
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
  private static final int SB_BOOT = SB_CHECKSUM - 8;
  private static final int FV_SEQ = 0;
  private static final int FV_INO = 8;
  private static final int FV_SIZE = 16;
  private static final int FV_MTIME = 24;
  private static final int FV_PATH_LEN = 32;
  private static final int FV_PATH = 40;
  private static final long FV_UNLINKING = 1L << 31;
  /** Entry seqs at or above this were out of range in version 1 (its scan packed seq|slot). */
  private static final long MAX_ENTRY_SEQ = 1L << 32;

  /** Version 1's geometry: no journal between the file table and the entries. */
  record Geometry(int blockSize, long nBlocks, int fileSlots, long fileTableOffset,
      long entriesOffset, long dataOffset) {
    long fileSize() {
      return dataOffset + nBlocks * blockSize;
    }

    static Geometry of(long nBlocks, int blockSize) {
      int fileSlots = (int) Math.min(1 << 20, Math.max(64, nBlocks / 8));
      long fileTable = SUPERBLOCK_SIZE;
      long entries = CacheLayout.align(fileTable + (long) fileSlots * 2 * FILE_VERSION_SIZE, 4096);
      long data = CacheLayout.align(entries + nBlocks * ENTRY_SIZE, Math.max(4096, blockSize));
      return new Geometry(blockSize, nBlocks, fileSlots, fileTable, entries, data);
    }
  }
  // ---- end of the frozen part -----------------------------------------------------------

  /** A file slot's newest committed version. */
  record File(int slot, long seq, long ino, int dev, long size, long mtimeNanos, String path,
      boolean unlinking) {}

  /** A block to write back: its file slot, block index and cache slot (entry). */
  record Block(int fileSlot, long blockIndex, long entry) {}

  private final CacheMemory mem;
  final Geometry geometry;
  final CacheLayout.BackingIdentity backing;
  final long seqCount;
  /** Whether the open epoch's complete records were taken (same boot). */
  final boolean sameBoot;
  /** Files with a committed version, by slot, highest slot first (version 1's order). */
  final List<File> files = new ArrayList<>();
  /** Winning committed entries by file slot, sorted by block index. */
  final Map<Integer, List<Block>> blocks = new HashMap<>();
  int committedBlocks;
  /** Entries holding data that no mount would keep (uncommitted), for check's report. */
  int uncommittedBlocks;
  /** Inconsistencies version 1 refused a cache for; a non-empty list means: refuse. */
  final List<String> problems = new ArrayList<>();

  private LegacyV1Cache(CacheMemory mem, Geometry g, CacheLayout.BackingIdentity backing,
      long seqCount, boolean sameBoot) {
    this.mem = mem;
    this.geometry = g;
    this.backing = backing;
    this.seqCount = seqCount;
    this.sameBoot = sameBoot;
  }

  /** Whether the memory holds a wcfs cache whose version word says 1; reads two words. */
  static boolean isVersion1(CacheMemory mem) throws IOException {
    return mem.size() >= SUPERBLOCK_SIZE && mem.readLong(SB_MAGIC) == MAGIC
        && (int) (mem.readLong(SB_VERSION_BLOCKSIZE) >>> 32) == VERSION;
  }

  /**
   * Reads a version 1 cache by version 1's rules, without writing a byte. The superblock is
   * checked as version 1 checked it (a failure throws); then the file table and the entries
   * are read, and what version 1 refused a cache for goes to {@link #problems}. {@code
   * expected} null skips the backing check ({@code wcfs check}); {@code bootId} 0 takes
   * committed records only.
   */
  static LegacyV1Cache read(CacheMemory mem, CacheLayout.BackingIdentity expected, long bootId)
      throws IOException {
    if (!isVersion1(mem)) {
      throw new IllegalArgumentException("not a version 1 cache");
    }
    String v1 = "this cache was written by wcfs format version 1, and ";
    long vb = mem.readLong(SB_VERSION_BLOCKSIZE);
    int blockSize = (int) vb;
    long stored = mem.readLong(SB_CHECKSUM);
    long computed = superblockChecksum(mem);
    if (stored != computed) {
      throw new CacheFormatException(String.format(v1 + "its superblock checksum does not match"
          + " (stored 0x%08x, computed 0x%08x): its header is corrupted; nothing in it was"
          + " changed", stored, computed));
    }
    try {
      CacheLayout.checkBlockSize(blockSize);
    } catch (IllegalArgumentException e) {
      throw new CacheFormatException(v1 + "its superblock block size is invalid: "
          + e.getMessage() + "; nothing in it was changed");
    }
    long nBlocks = mem.readLong(SB_NBLOCKS);
    Geometry expectedGeometry = nBlocks > 0 && nBlocks < (1L << 40)
        ? Geometry.of(nBlocks, blockSize) : null;
    long slots = mem.readLong(SB_FILESLOTS);
    Geometry found = new Geometry(blockSize, nBlocks, (int) (slots >>> 32),
        mem.readLong(SB_FILETABLE_OFFSET), mem.readLong(SB_ENTRIES_OFFSET),
        mem.readLong(SB_DATA_OFFSET));
    if (expectedGeometry == null || !expectedGeometry.equals(found)
        || (int) slots != FILE_VERSION_SIZE) {
      throw new CacheFormatException(v1 + "its superblock geometry is inconsistent: found "
          + found + ", expected " + expectedGeometry + " for " + nBlocks + " blocks; nothing in"
          + " it was changed");
    }
    if (found.fileSize() > mem.size()) {
      throw new CacheFormatException(v1 + "the file is " + mem.size() + " bytes but its"
          + " superblock describes " + found.fileSize() + " bytes: it was truncated; nothing in"
          + " it was changed");
    }
    long seqCount = mem.readLong(SB_SEQ_COUNT);
    if (seqCount < 1) {
      throw new CacheFormatException(v1 + "its superblock seq_count " + seqCount
          + " is invalid; nothing in it was changed");
    }
    int len = (int) mem.readLong(SB_BACKING_PATH_LEN);
    if (len < 0 || len > MAX_BACKING_PATH_BYTES) {
      throw new CacheFormatException(v1 + "its superblock backing path length " + len
          + " is invalid; nothing in it was changed");
    }
    CacheLayout.BackingIdentity actual = new CacheLayout.BackingIdentity(
        mem.readLong(SB_BACKING_INO),
        new String(readBytes(mem, SB_BACKING_PATH, len), StandardCharsets.UTF_8));
    if (expected != null
        && (!actual.path().equals(expected.path()) || actual.ino() != expected.ino())) {
      throw new CacheFormatException("this cache was written by wcfs format version 1 for"
          + " backing directory " + actual.path() + " (inode " + actual.ino() + "), not "
          + expected.path() + " (inode " + expected.ino() + "); nothing in it was changed."
          + " Mount it over its own directory (or run `wcfs writeback CACHE " + actual.path()
          + "`): that writes its data back there and formats it as version 2");
    }
    boolean sameBoot = bootId != 0 && mem.readLong(SB_BOOT) == bootId;
    LegacyV1Cache c = new LegacyV1Cache(mem, found, actual, seqCount, sameBoot);
    c.scan();
    return c;
  }

  /** Version 1's CacheScan: the newest committed version per slot, the newest entry per block. */
  private void scan() throws IOException {
    long acceptBelow = sameBoot ? seqCount + 1 : seqCount;
    File[] bySlot = new File[geometry.fileSlots()];
    for (int fs = geometry.fileSlots() - 1; fs >= 0; fs--) {
      File best = null;
      boolean badPath = false;
      for (int v = 0; v < 2; v++) {
        long base = geometry.fileTableOffset() + ((long) fs * 2 + v) * FILE_VERSION_SIZE;
        long seq = mem.readLong(base + FV_SEQ);
        if (!CacheLayout.isCommitted(seq, acceptBelow) || (best != null && seq <= best.seq())) {
          continue;
        }
        long lenWord = mem.readLong(base + FV_PATH_LEN);
        int len = (int) (lenWord & 0x7fffffffL);
        badPath = len > MAX_PATH_BYTES;
        String path = badPath ? null
            : new String(readBytes(mem, base + FV_PATH, len), StandardCharsets.UTF_8);
        best = new File(fs, seq, mem.readLong(base + FV_INO), (int) (lenWord >>> 32),
            mem.readLong(base + FV_SIZE), mem.readLong(base + FV_MTIME), path,
            (lenWord & FV_UNLINKING) != 0);
      }
      if (best != null && badPath) {
        problems.add("file slot " + fs + " holds a committed version with an invalid path"
            + " length");
      }
      if (best != null) {
        bySlot[fs] = best;
        files.add(best);
      }
    }
    Map<Long, Long> newest = new HashMap<>();
    for (long s = 0; s < geometry.nBlocks(); s++) {
      long entry = geometry.entriesOffset() + s * ENTRY_SIZE;
      long seq = mem.readLong(entry + 8);
      if (seq == FREE) {
        continue;
      }
      if (!CacheLayout.isCommitted(seq, acceptBelow)) {
        uncommittedBlocks++;
        continue;
      }
      long loc = mem.readLong(entry);
      int fs = (int) (loc >>> BLOCK_INDEX_BITS) - 1;
      File file = fs >= 0 && fs < bySlot.length ? bySlot[fs] : null;
      if (file == null && seq == seqCount) {
        uncommittedBlocks++; // same boot: a write in flight, its file version never stored
        continue;
      }
      if (file == null) {
        problems.add("committed entry " + s + " names file slot " + fs + ", which holds no"
            + " file");
        continue;
      }
      if (seq >= MAX_ENTRY_SEQ) {
        problems.add("entry " + s + " has seq " + seq + ", out of range");
        continue;
      }
      long b = loc & BLOCK_INDEX_MASK;
      if (b * geometry.blockSize() >= file.size()) {
        continue; // past the size a later truncate recorded
      }
      Long other = newest.get(loc);
      if (other != null) {
        long otherSeq = mem.readLong(geometry.entriesOffset() + other * ENTRY_SIZE + 8);
        if (otherSeq == seq) {
          problems.add("entries " + other + " and " + s + " both hold block " + b + " of "
              + file.path() + " with seq " + seq);
          continue;
        }
        if (otherSeq > seq) {
          continue;
        }
      }
      newest.put(loc, s);
    }
    for (Map.Entry<Long, Long> e : newest.entrySet()) {
      int fs = (int) (e.getKey() >>> BLOCK_INDEX_BITS) - 1;
      blocks.computeIfAbsent(fs, k -> new ArrayList<>())
          .add(new Block(fs, e.getKey() & BLOCK_INDEX_MASK, e.getValue()));
    }
    for (List<Block> l : blocks.values()) {
      l.sort((x, y) -> Long.compare(x.blockIndex(), y.blockIndex()));
    }
    committedBlocks = newest.size();
  }

  /** Throws, naming the first of the {@link #problems}, if there are any. */
  void refuseIfCorrupted() throws CacheFormatException {
    if (!problems.isEmpty()) {
      throw new CacheFormatException("this cache was written by wcfs format version 1 and is"
          + " corrupted: " + problems.get(0) + "; nothing in it was changed. `wcfs check`"
          + " lists its contents");
    }
  }

  /** What happened to the files in {@link #writeBack}. */
  record Outcome(int files, long blocks, int lostAndFound, int unlinksFinished) {}

  /**
   * Writes every committed block to its file in {@code store}, sets each file's recorded size
   * and mtime and fsyncs it, as version 1's recovery and writeback would have; files whose
   * path is gone go to lost+found (and that directory is fsync'd), never dropped. Writes
   * nothing to the cache. Refuses (throws, before any write) a cache with {@link #problems}.
   */
  Outcome writeBack(BackingStore store) throws IOException {
    refuseIfCorrupted();
    store.checkMayWriteBack();
    Set<String> taken = new HashSet<>();
    int lost = 0;
    int unlinked = 0;
    long written = 0;
    int blockSize = geometry.blockSize();
    int runMax = Math.max(1, (1 << 20) / blockSize);
    try (NativeBuffer buf = new NativeBuffer((long) runMax * blockSize)) {
      for (File f : files) { // highest slot first: which of two slots naming one file wins
        String path = destination(store, f, taken);
        if (path == null) {
          unlinked++;
          continue;
        }
        if (!path.equals(f.path())) {
          lost++;
        }
        List<Block> bl = blocks.getOrDefault(f.slot(), List.of());
        try (BackingStore.BackingFile file = store.open(path)) {
          int i = 0;
          while (i < bl.size()) {
            int n = 1;
            while (i + n < bl.size() && n < runMax
                && bl.get(i + n).blockIndex() == bl.get(i).blockIndex() + n) {
              n++;
            }
            for (int k = 0; k < n; k++) {
              mem.copyOut(geometry.dataOffset() + bl.get(i + k).entry() * blockSize,
                  buf.address() + (long) k * blockSize, blockSize);
            }
            // Whole blocks, also the one holding the end of file: the truncate below cuts it.
            file.write(bl.get(i).blockIndex() * blockSize, buf.address(), (long) n * blockSize);
            i += n;
          }
          if (file.size() != f.size()) {
            file.truncate(f.size());
          }
          file.setMtime(f.mtimeNanos());
          file.sync();
        } catch (IOException e) {
          throw new IOException(path + ": " + e.getMessage(), e);
        }
        written += bl.size();
      }
      if (lost > 0) {
        // The names of the new files (and of the directory) durable before the cache goes.
        store.syncDirectory(WriteCache.LOST_AND_FOUND);
        store.syncDirectory("");
      }
    }
    return new Outcome(files.size() - unlinked, written, lost, unlinked);
  }

  /**
   * Where a file's blocks go, by version 1's recovery: its path, or lost+found, or nowhere
   * (null) when an interrupted unlink had already happened.
   */
  private String destination(BackingStore store, File f, Set<String> taken) throws IOException {
    String path = f.path();
    BackingStore.Stat st = store.stat(path);
    boolean sameDevice = st != null && (f.dev() == 0 || devHint(st.dev()) == f.dev());
    boolean sameInode = sameDevice && st.ino() == f.ino();
    if (f.unlinking() && (st == null || (sameDevice && !sameInode))) {
      LOG.info("version 1 cache slot {}: the unlink of {} (or rename over it) had happened;"
          + " its blocks are dropped, as that wcfs would have", f.slot(), path);
      return null;
    }
    String lost = null;
    if (f.unlinking() && !sameInode) {
      lost = "was being unlinked or renamed over when wcfs stopped, and its backing filesystem"
          + " was remounted since";
    } else if (st == null || !st.regularFile()) {
      lost = st == null ? "no longer exists in the backing directory"
          : "is no longer a regular file in the backing directory";
    } else if (taken.contains(st.dev() + ":" + st.ino())) {
      lost = "now names the same file as another path the cache holds data for";
    }
    if (lost != null) {
      String to = Writeback.lostAndFoundPath(path, f.slot(), f.seq());
      LOG.error("version 1 cache slot {}: {} {}; its committed data (size {}) goes to {}"
          + " instead", f.slot(), path, lost, f.size(), to);
      store.createFile(to);
      st = store.stat(to);
      if (st == null) {
        throw new IOException("could not create " + to + " in the backing directory");
      }
      path = to;
    } else if (!sameInode) {
      LOG.warn("version 1 cache slot {}: {} was inode {} when cached and is inode {} now; the"
          + " cache's record of the path wins", f.slot(), path, f.ino(), st.ino());
    }
    taken.add(st.dev() + ":" + st.ino());
    return path;
  }

  /**
   * Opening a version 1 cache: checks it is this backing directory's and consistent (else
   * throws, having changed nothing), writes its data back, then formats it as the current
   * version with its block size. A crash before the format leaves the version 1 cache as it
   * was; one during the format leaves an interrupted format (nothing left to lose).
   */
  static int convert(CacheMemory mem, BackingStore store, long bootId) throws IOException {
    CacheLayout.BackingIdentity identity = store.identity();
    LegacyV1Cache v1 = read(mem, identity, bootId);
    v1.refuseIfCorrupted();
    LOG.warn("cache was written by wcfs format version 1: writing its {} blocks of {} files"
        + " back to {}, then formatting it as version {}{}", v1.committedBlocks, v1.files.size(),
        identity.path(), CacheLayout.VERSION, v1.sameBoot ? " (same boot as its last mount:"
        + " the writes its daemon had stored but not committed are kept, as version 1 did)"
        : "");
    long start = System.nanoTime();
    Outcome o;
    try {
      o = v1.writeBack(store);
    } catch (IOException e) {
      throw new IOException("writing back the cache written by wcfs format version 1 to "
          + identity.path() + " failed (" + e.getMessage() + "); nothing in the cache was"
          + " changed, and the next mount writes it back again", e);
    }
    LOG.warn("version 1 cache: wrote {} blocks of {} files back to {} in {} ms ({} to {}, {}"
        + " unlinks finished); formatting it as version {}", o.blocks(), o.files(),
        identity.path(), (System.nanoTime() - start) / 1_000_000, o.lostAndFound(),
        WriteCache.LOST_AND_FOUND, o.unlinksFinished(), CacheLayout.VERSION);
    CacheLayout.format(mem, v1.geometry.blockSize(), identity);
    return o.lostAndFound();
  }

  // ---- FROZEN: version 1's checksum and byte helpers -------------------------------------

  /** st_dev folded to 32 bits, never 0: version 1's dev hint. */
  private static int devHint(long dev) {
    int h = (int) (dev ^ (dev >>> 32));
    return h == 0 ? 1 : h;
  }

  /** CRC32C of every superblock word but seq_count, the boot word read as 0. */
  private static long superblockChecksum(CacheMemory mem) throws IOException {
    CRC32C crc = new CRC32C();
    byte[] word = new byte[8];
    for (int off = 0; off < SB_CHECKSUM; off += 8) {
      if (off == SB_SEQ_COUNT) {
        continue;
      }
      long v = off == SB_BOOT ? 0 : mem.readLong(off);
      for (int i = 0; i < 8; i++) {
        word[i] = (byte) (v >>> (8 * i));
      }
      crc.update(word);
    }
    return crc.getValue();
  }

  private static byte[] readBytes(CacheMemory mem, long offset, int length) throws IOException {
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
