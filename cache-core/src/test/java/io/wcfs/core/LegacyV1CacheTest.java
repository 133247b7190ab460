package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A cache written by format version 1 (built here with the version 1 writer, {@link
 * CacheLayoutV1}) is written back by version 1's rules when opened, then formatted as the
 * current version; refused unchanged when it is another directory's or corrupted.
 */
class LegacyV1CacheTest {
  private static final int BS = 512;
  private static final long MTIME_A = 1_600_000_000_123_456_789L;
  private static final long MTIME_B = 1_500_000_000_000_000_001L;
  private static final String LOST_C = WriteCache.LOST_AND_FOUND + "/gone#c.slot2-seq3";
  /** Committed blocks the scenario's cache holds (a: 3, dir/b: 2, gone/c: 1, d: 1, f: 1). */
  private static final int COMMITTED = 8;

  @TempDir Path tmp;

  private static byte[] fill(int len, int value) {
    byte[] b = new byte[len];
    Arrays.fill(b, (byte) value);
    return b;
  }

  private static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) {
      n += p.length;
    }
    byte[] out = new byte[n];
    int at = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, out, at, p.length);
      at += p.length;
    }
    return out;
  }

  /** A version 1 cache and the backing directory it was mounted over, as an old wcfs left them. */
  private static final class Scenario {
    final Path root;
    final BackingStore store;
    final CrashingMemory mem;
    final CacheLayoutV1 v1;

    Scenario(Path root, BackingStore store) throws IOException {
      this.root = root;
      this.store = store;
      // 256 version 1 blocks: room for the version 2 journal afterwards
      mem = new CrashingMemory((int) CacheLayoutV1.Geometry.of(256, BS).fileSize());
      v1 = CacheLayoutV1.format(mem, BS, new CacheLayoutV1.BackingIdentity(
          store.identity().ino(), store.identity().path()));
    }

    void block(int entry, int fileSlot, long blockIndex, long seq, int value)
        throws IOException {
      try (NativeBuffer buf = new NativeBuffer(BS)) {
        buf.put(0, fill(BS, value), 0, BS);
        mem.copyIn(v1.dataOffset(entry), buf.address(), BS);
      }
      v1.storeEntry(entry, CacheLayoutV1.location(fileSlot, blockIndex), seq);
    }

    void file(int slot, int version, long seq, String path, long size, long mtime,
        boolean unlinking) throws IOException {
      BackingStore.Stat st = store.stat(path);
      v1.storeFileVersion(slot, version, seq, st == null ? 4711 : st.ino(),
          st == null ? 0 : CacheLayoutV1.devHint(st.dev()), size, mtime, path, unlinking);
    }

    void commit(long seqCount) throws IOException {
      mem.flush(0, mem.size());
      mem.commit();
      v1.storeSeqCount(seqCount);
      mem.commit();
    }
  }

  /**
   * The backing directory holds a (3 blocks of 0x11), dir/b (empty), e (4 blocks of 0x55) and
   * f; gone/ and d do not exist. The cache, seq_count 5:
   *
   * <ul>
   *   <li>slot 0, a: size 2 blocks + 100 (seq 4; a version of seq 5, size 10 blocks, never
   *       committed); block 0 written twice (seq 2: 0x01, seq 4: 0x02), block 1 (seq 3: 0x03),
   *       block 2 committed (seq 1: 0x08) and overwritten uncommitted (seq 5: 0x09).
   *   <li>slot 1, dir/b: truncated to 1 block + 200 (seq 3; seq 2 had 4 blocks): blocks 0
   *       (0x04), 1 (0x05) and 3 (0x06, past the new size).
   *   <li>slot 2, gone/c: size 256 (seq 3), block 0 (0x07): its path is gone.
   *   <li>slot 3, d: being unlinked (seq 3), block 0 (0x0d): its path is gone, the unlink
   *       happened.
   *   <li>slot 4, e: size 1 block + 100 (seq 2), no blocks: a truncate to apply.
   *   <li>slot 5, f: being unlinked (seq 4) but still the same file: block 0 (0x0f).
   * </ul>
   */
  private Scenario scenario(String name, boolean failing) throws IOException {
    Path root = Files.createDirectories(tmp.resolve(name));
    Files.write(root.resolve("a"), fill(3 * BS, 0x11));
    Files.createDirectories(root.resolve("dir"));
    Files.write(root.resolve("dir/b"), new byte[0]);
    Files.write(root.resolve("e"), fill(4 * BS, 0x55));
    Files.write(root.resolve("f"), fill(BS, 0x22));
    BackingStore store = failing ? new FailingBackingStore(root) : new DirectoryBackingStore(root);
    Scenario s = new Scenario(root, store);
    s.file(0, 1, 4, "a", 2 * BS + 100, MTIME_A, false);
    s.file(0, 0, 5, "a", 10 * BS, MTIME_A + 1, false); // never committed
    s.block(20, 0, 0, 2, 0x01);
    s.block(7, 0, 0, 4, 0x02);
    s.block(3, 0, 1, 3, 0x03);
    s.block(0, 0, 2, 1, 0x08);
    s.block(30, 0, 2, 5, 0x09); // never committed
    s.file(1, 0, 2, "dir/b", 4 * BS, MTIME_B, false);
    s.file(1, 1, 3, "dir/b", BS + 200, MTIME_B, false);
    s.block(11, 1, 0, 2, 0x04);
    s.block(12, 1, 1, 2, 0x05);
    s.block(13, 1, 3, 2, 0x06);
    s.file(2, 0, 3, "gone/c", 256, MTIME_B, false);
    s.block(40, 2, 0, 3, 0x07);
    s.file(3, 1, 3, "d", BS, MTIME_B, true);
    s.block(41, 3, 0, 3, 0x0d);
    s.file(4, 0, 2, "e", BS + 100, MTIME_B, false);
    s.file(5, 0, 4, "f", BS, MTIME_B, true);
    s.block(42, 5, 0, 4, 0x0f);
    s.commit(5);
    return s;
  }

  /** What the backing directory holds after the conversion: every regular file, exactly. */
  private static Map<String, byte[]> expected() {
    Map<String, byte[]> m = new TreeMap<>();
    m.put("a", concat(fill(BS, 0x02), fill(BS, 0x03), fill(100, 0x08)));
    m.put("dir/b", concat(fill(BS, 0x04), fill(200, 0x05)));
    m.put("e", fill(BS + 100, 0x55));
    m.put("f", fill(BS, 0x0f));
    m.put(LOST_C, fill(256, 0x07));
    return m;
  }

  private static Map<String, byte[]> contents(Path root) throws IOException {
    Map<String, byte[]> m = new TreeMap<>();
    try (Stream<Path> all = Files.walk(root)) {
      for (Path p : (Iterable<Path>) all::iterator) {
        if (Files.isRegularFile(p)) {
          m.put(root.relativize(p).toString(), Files.readAllBytes(p));
        }
      }
    }
    return m;
  }

  private static void assertContents(Map<String, byte[]> want, Path root) throws IOException {
    Map<String, byte[]> got = contents(root);
    assertEquals(want.keySet(), got.keySet(), "files in the backing directory");
    for (String k : want.keySet()) {
      assertArrayEquals(want.get(k), got.get(k), k);
    }
  }

  private static WriteCache open(CacheMemory mem, BackingStore store) throws IOException {
    return WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
  }

  /** The cache is a version 2 cache of the same block size holding nothing. */
  private static void assertEmptyVersion2(CacheMemory mem, BackingStore store)
      throws IOException {
    assertEquals(CacheLayout.VERSION, (int) (mem.readLong(8) >>> 32), "format version");
    CacheLayout layout = CacheLayout.open(mem, store.identity());
    assertEquals(BS, layout.geometry().blockSize());
    CacheScan scan = CacheScan.of(layout);
    assertEquals(0, scan.live.length, "committed blocks");
    assertTrue(Arrays.stream(scan.files).allMatch(f -> f == null), "file slots in use");
    assertTrue(scan.problems.isEmpty(), scan.problems.toString());
  }

  @Test
  @DisplayName("a version 1 cache is written back by its rules, then formatted as version 2")
  void convertsAndWritesBackExactlyTheCommittedData() throws IOException {
    Scenario s = scenario("backing", false);
    WriteCache cache = open(s.mem, s.store);
    assertContents(expected(), s.root);
    assertEquals(MTIME_A, Files.getLastModifiedTime(s.root.resolve("a")).to(TimeUnit.NANOSECONDS));
    assertEquals(MTIME_B,
        Files.getLastModifiedTime(s.root.resolve("dir/b")).to(TimeUnit.NANOSECONDS));
    assertEquals(1, cache.stats().recovery().lostAndFoundFiles());
    assertEquals(0, cache.stats().space().dirtyBlocks());
    assertArrayEquals(expected().get("a"), CacheFixture.read(cache, "a"));
    cache.close();
    assertEmptyVersion2(s.mem, s.store);
    assertContents(expected(), s.root);

    // A second open is an ordinary one; the cache works.
    WriteCache again = open(s.mem, s.store);
    CacheFixture.write(again, "a", 0, fill(10, 0x33));
    again.commit();
    again.close();
    Map<String, byte[]> want = expected();
    want.put("a", CacheFixture.apply(want.get("a"), 0, fill(10, 0x33)));
    assertContents(want, s.root);
  }

  @Test
  @DisplayName("in the boot of its last mount, the open epoch's stored writes are kept, as v1 did")
  void sameBootKeepsTheOpenEpoch() throws IOException {
    Scenario s = scenario("backing", false);
    long boot = CacheFixture.nextBoot();
    s.v1.storeBoot(boot);
    WriteCache cache = WriteCache.openManual(s.mem, s.store, CacheFixture.manualConfig(BS), boot);
    cache.close();
    Map<String, byte[]> want = expected();
    // The seq 5 version (10 blocks) and block 2 of seq 5 count in the same boot.
    want.put("a", concat(fill(BS, 0x02), fill(BS, 0x03), fill(BS, 0x09), new byte[7 * BS]));
    assertContents(want, s.root);
    assertEquals(MTIME_A + 1,
        Files.getLastModifiedTime(s.root.resolve("a")).to(TimeUnit.NANOSECONDS));
    assertEmptyVersion2(s.mem, s.store);
  }

  @Test
  @DisplayName("a version 1 cache of another backing directory is refused unchanged")
  void otherBackingDirectoryIsRefusedUnchanged() throws IOException {
    Scenario s = scenario("backing", false);
    Path other = Files.createDirectories(tmp.resolve("other"));
    byte[] image = s.mem.image();
    Map<String, byte[]> before = contents(s.root);
    CacheFormatException e = assertThrows(CacheFormatException.class,
        () -> open(s.mem, new DirectoryBackingStore(other)));
    assertTrue(e.getMessage().contains("format version 1")
        && e.getMessage().contains(s.root.toString()), e.getMessage());
    assertArrayEquals(image, s.mem.image(), "the cache is unchanged");
    assertContents(before, s.root);
    assertContents(Map.of(), other);
  }

  @Test
  @DisplayName("a corrupted version 1 cache is refused, cache and backing directory unchanged")
  void corruptedIsRefusedUnchanged() throws IOException {
    // A superblock word changed: the checksum no longer matches.
    Scenario s = scenario("b1", false);
    s.mem.pokeLong(16, s.mem.readLong(16) + 1);
    assertRefusedUnchanged(s, "checksum");

    // Two committed entries of one block with one seq: version 1 refused that.
    s = scenario("b2", false);
    s.block(50, 0, 1, 3, 0x44);
    s.commit(5);
    assertRefusedUnchanged(s, "both hold block 1");

    // A committed entry naming a file slot that holds no file.
    s = scenario("b3", false);
    s.block(51, 9, 0, 2, 0x44);
    s.commit(5);
    assertRefusedUnchanged(s, "holds no file");

    // A committed file version whose path length is out of range.
    s = scenario("b4", false);
    long base = s.v1.fileVersionOffset(4, 0);
    s.mem.pokeLong((int) base + 32, 300);
    assertRefusedUnchanged(s, "invalid path length");
  }

  private void assertRefusedUnchanged(Scenario s, String why) throws IOException {
    byte[] image = s.mem.image();
    Map<String, byte[]> before = contents(s.root);
    CacheFormatException e = assertThrows(CacheFormatException.class, () -> open(s.mem, s.store));
    assertTrue(e.getMessage().contains("format version 1") && e.getMessage().contains(why)
        && e.getMessage().contains("nothing in it was changed"), e.getMessage());
    assertArrayEquals(image, s.mem.image(), "the cache is unchanged");
    assertContents(before, s.root);
    CacheInspector.Report r = CacheInspector.inspect(s.mem);
    assertFalse(r.ok(), r.text());
  }

  @Test
  @DisplayName("a backing failure at any point of the drain leaves the v1 cache as it was")
  void failureMidDrainLeavesTheCacheAndTheNextOpenConverts() throws IOException {
    int k = 0;
    for (; ; k++) {
      Scenario s = scenario("r" + k, true);
      FailingBackingStore store = (FailingBackingStore) s.store;
      byte[] image = s.mem.image();
      store.failAfter = k;
      WriteCache cache;
      try {
        cache = open(s.mem, store);
      } catch (IOException e) {
        assertTrue(e.getMessage().contains("injected backing failure"), e.getMessage());
        assertTrue(store.failing);
        assertArrayEquals(image, s.mem.image(), "after a failure at backing operation " + k);
        store.failing = false;
        cache = open(s.mem, store);
        cache.close();
        assertContents(expected(), s.root);
        assertEmptyVersion2(s.mem, store);
        continue;
      }
      cache.close(); // no failure left to inject: every operation ran
      assertContents(expected(), s.root);
      assertEmptyVersion2(s.mem, store);
      break;
    }
    // 5 files written back: at least a write or a truncate, and an fsync each
    assertTrue(k >= 10, "failed at " + k + " points only");
  }

  @Test
  @DisplayName("a crash during the format that follows the drain loses nothing")
  void crashDuringTheFormatLosesNothing() throws IOException {
    // The format's memory operations: the drain before it makes none (it writes nothing to
    // the cache), so a crash after n of the conversion's operations is one inside the format.
    Scenario probe = scenario("probe", false);
    CountingMemory counting = new CountingMemory(CrashingMemory.of(probe.mem.image()));
    CacheLayout.format(counting, BS, probe.store.identity());
    long total = counting.ops;
    for (long n : new long[] {0, 1, 2, 3, total / 2, total - 3, total - 2, total - 1, total}) {
      Scenario s = scenario("c" + n, false);
      s.mem.crashAfter(n);
      assertThrows(CrashingMemory.SimulatedCrash.class, () -> open(s.mem, s.store));
      // The drain was over before the first store into the cache.
      assertContents(expected(), s.root);
      CrashingMemory after = s.mem.crash(new java.util.Random(n));
      if (n == total) { // the crash came after the format, in the recovery of the new cache
        assertEquals(CacheLayout.Contents.WCFS_CACHE, CacheLayout.inspect(after));
        assertEquals(CacheLayout.VERSION, (int) (after.readLong(8) >>> 32));
      }
      if (CacheLayout.inspect(after) == CacheLayout.Contents.FORMAT_INTERRUPTED) {
        CacheLayout.format(after, BS, s.store.identity()); // as a mount does (CacheSetup)
      }
      open(after, s.store).close();
      assertContents(expected(), s.root);
      assertEmptyVersion2(after, s.store);
    }
  }

  @Test
  @DisplayName("wcfs check says what a version 1 cache holds and that a mount converts it")
  void checkReportsVersionOne() throws IOException {
    Scenario s = scenario("backing", false);
    byte[] image = s.mem.image();
    CacheInspector.Report r = CacheInspector.inspect(s.mem);
    assertTrue(r.ok(), r.text());
    assertEquals(COMMITTED, r.committedBlocks());
    assertTrue(r.text().contains("format version 1"), r.text());
    assertTrue(r.text().contains("writes these " + COMMITTED + " committed blocks back"),
        r.text());
    assertTrue(r.text().contains("uncommitted blocks 1"), r.text());
    assertArrayEquals(image, s.mem.image(), "check changes nothing");
  }

  /** Counts the memory operations that store, flush or commit. */
  private static final class CountingMemory implements CacheMemory {
    private final CacheMemory m;
    long ops;

    CountingMemory(CacheMemory m) {
      this.m = m;
    }

    @Override
    public long size() {
      return m.size();
    }

    @Override
    public void copyIn(long offset, long srcAddress, long length) throws IOException {
      ops++;
      m.copyIn(offset, srcAddress, length);
    }

    @Override
    public void assign(long offset, long value) throws IOException {
      ops++;
      m.assign(offset, value);
    }

    @Override
    public void flush(long offset, long length) throws IOException {
      ops++;
      m.flush(offset, length);
    }

    @Override
    public void commit() throws IOException {
      ops++;
      m.commit();
    }

    @Override
    public long readLong(long offset) throws IOException {
      return m.readLong(offset);
    }

    @Override
    public void copyOut(long offset, long dstAddress, long length) throws IOException {
      m.copyOut(offset, dstAddress, length);
    }

    @Override
    public String describe() {
      return "counting";
    }

    @Override
    public void close() {}
  }
}
