package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class RecoveryTest {
  private static final int BS = 512;
  @TempDir Path tmp;
  Path root;
  DirectoryBackingStore store;
  CrashingMemory mem;

  @BeforeEach
  void setUp() throws IOException {
    root = Files.createDirectories(tmp.resolve("backing"));
    store = new DirectoryBackingStore(root);
    mem = CacheFixture.memoryFor(32, BS);
    CacheLayout.format(mem, BS, store.identity());
  }

  private WriteCache open() throws IOException {
    return WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), CacheFixture.nextBoot());
  }

  private static byte[] fill(int len, int value) {
    byte[] b = new byte[len];
    Arrays.fill(b, (byte) value);
    return b;
  }

  /** Slots holding a committed entry. */
  private int[] usedSlots(CacheLayout layout) throws IOException {
    return java.util.stream.IntStream.range(0, (int) layout.geometry().nBlocks()).filter(s -> {
      try {
        return layout.entrySeq(s) != CacheLayout.FREE;
      } catch (IOException e) {
        throw new RuntimeException(e);
      }
    }).toArray();
  }

  @Nested
  @DisplayName("duplicate versions of a block")
  class Duplicates {
    /** Plants a second version of block 0 of "a" with the given seq and fill byte. */
    private void plantDuplicate(long seqDelta, int value) throws IOException {
      Files.createFile(root.resolve("a"));
      WriteCache c = open();
      CacheFixture.write(c, "a", 0, fill(BS, 1));
      c.commit();
      CacheFixture.write(c, "a", BS, fill(BS, 2));
      c.commit();
      c.abandon();
      CacheLayout layout = CacheLayout.open(mem, store.identity());
      int[] used = usedSlots(layout);
      int original = used[0];
      long loc = layout.entryLocation(original);
      long seq = layout.entrySeq(original);
      int spare = (int) layout.geometry().nBlocks() - 1;
      try (NativeBuffer buf = new NativeBuffer(BS)) {
        buf.put(0, fill(BS, value), 0, BS);
        mem.copyIn(layout.dataOffset(spare), buf.address(), BS);
      }
      layout.storeEntry(spare, loc, seq + seqDelta);
      mem.flush(0, mem.size());
      mem.commit();
    }

    @Test
    void higherCommittedSeqWins() throws IOException {
      plantDuplicate(1, 9);
      WriteCache c = open();
      byte[] got = CacheFixture.read(c, "a");
      assertArrayEquals(fill(BS, 9), Arrays.copyOf(got, BS));
      c.flush(10_000);
      assertArrayEquals(fill(BS, 9), Arrays.copyOf(Files.readAllBytes(root.resolve("a")), BS));
    }

    @Test
    void lowerSeqLoses() throws IOException {
      plantDuplicate(-1, 9);
      WriteCache c = open();
      assertArrayEquals(fill(BS, 1), Arrays.copyOf(CacheFixture.read(c, "a"), BS));
    }

    @Test
    void equalSeqsAreCorruption() throws IOException {
      plantDuplicate(0, 9);
      CacheFormatException e = assertThrows(CacheFormatException.class, RecoveryTest.this::open);
      assertTrue(e.getMessage().contains("corruption"), e.getMessage());
    }
  }

  @Nested
  @DisplayName("superblock checks, one message each")
  class SuperblockChecks {
    @Test
    void badMagicIsRefusedAndFileUntouched() throws IOException {
      mem.pokeLong(0, 0x1234);
      byte[] before = mem.image();
      CacheFormatException e = assertThrows(CacheFormatException.class, RecoveryTest.this::open);
      assertTrue(e.getMessage().contains("not a wcfs cache"), e.getMessage());
      assertArrayEquals(before, mem.image());
    }

    @Test
    void checksumMismatch() throws IOException {
      mem.pokeLong(CacheLayout.SUPERBLOCK_FIELDS[1], 12345);
      CacheFormatException e = assertThrows(CacheFormatException.class, RecoveryTest.this::open);
      assertTrue(e.getMessage().contains("checksum"), e.getMessage());
    }

    @ParameterizedTest(name = "field at offset {0}")
    @ValueSource(ints = {8, 16, 32, 40, 48, 56, 64})
    void eachFieldIsChecked(int offset) throws IOException {
      long original = mem.readLong(offset);
      mem.pokeLong(offset, offset == 8 ? ((CacheLayout.VERSION + 1L) << 32 | BS) : original + 4096);
      CacheLayout.raw(mem).storeChecksum();
      byte[] before = mem.image();
      CacheFormatException e = assertThrows(CacheFormatException.class, RecoveryTest.this::open);
      String expected = switch (offset) {
        case 8 -> "version";
        case 64 -> "belongs to backing directory";
        default -> "geometry";
      };
      assertTrue(e.getMessage().contains(expected), e.getMessage());
      assertArrayEquals(before, mem.image(), "a refused cache is left unchanged");
    }

    @Test
    @DisplayName("a version 1 cache is written back, then formatted as version 2")
    void versionOneCacheIsWrittenBackThenConverted() throws IOException {
      // Written by version 1's own layout code (LegacyV1CacheTest covers its rules).
      Files.write(root.resolve("a"), fill(2 * BS, 7));
      mem = new CrashingMemory((int) CacheLayoutV1.Geometry.of(256, BS).fileSize());
      CacheLayoutV1 v1 = CacheLayoutV1.format(mem, BS,
          new CacheLayoutV1.BackingIdentity(store.identity().ino(), store.identity().path()));
      BackingStore.Stat st = store.stat("a");
      v1.storeFileVersion(0, 0, 1, st.ino(), CacheLayoutV1.devHint(st.dev()), BS + 10,
          st.mtimeNanos(), "a", false);
      try (NativeBuffer buf = new NativeBuffer(BS)) {
        buf.put(0, fill(BS, 1), 0, BS);
        mem.copyIn(v1.dataOffset(5), buf.address(), BS);
      }
      v1.storeEntry(5, CacheLayoutV1.location(0, 1), 1);
      mem.flush(0, mem.size());
      mem.commit();
      v1.storeSeqCount(2);
      mem.commit();
      WriteCache c = open();
      byte[] want = Arrays.copyOf(fill(BS, 7), BS + 10);
      System.arraycopy(fill(10, 1), 0, want, BS, 10);
      assertArrayEquals(want, Files.readAllBytes(root.resolve("a")), "written back at once");
      assertArrayEquals(want, CacheFixture.read(c, "a"));
      assertEquals(0, c.stats().space().dirtyBlocks());
      c.close();
      assertEquals(CacheLayout.VERSION, (int) (mem.readLong(8) >>> 32));
      open().close(); // and it opens as an ordinary version 2 cache
    }

    @Test
    @DisplayName("a version 2 cache whose version word says 1 is refused, not misread")
    void versionOneWordOverVersionTwoLayoutIsRefusedUnchanged() throws IOException {
      mem.pokeLong(8, 1L << 32 | BS);
      CacheLayout.raw(mem).storeChecksum();
      byte[] before = mem.image();
      CacheFormatException e = assertThrows(CacheFormatException.class, RecoveryTest.this::open);
      assertTrue(e.getMessage().contains("format version 1")
          && e.getMessage().contains("geometry") && e.getMessage().contains("nothing in it was"
          + " changed"), e.getMessage());
      assertArrayEquals(before, mem.image(), "a refused cache is left unchanged");
    }

    @Test
    void blockSizeNotPowerOfTwo() throws IOException {
      mem.pokeLong(8, 2L << 32 | 1000);
      CacheLayout.raw(mem).storeChecksum();
      CacheFormatException e = assertThrows(CacheFormatException.class, RecoveryTest.this::open);
      assertTrue(e.getMessage().contains("power of two"), e.getMessage());
    }

    @Test
    void truncatedFile() throws IOException {
      CrashingMemory shorter = CrashingMemory.of(Arrays.copyOf(mem.image(), (int) mem.size() - BS));
      CacheFormatException e = assertThrows(CacheFormatException.class,
          () -> WriteCache.openManual(shorter, store, CacheFixture.manualConfig(BS), CacheFixture.nextBoot()));
      assertTrue(e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void otherBackingDirectory() throws IOException {
      Path other = Files.createDirectories(tmp.resolve("other"));
      CacheFormatException e = assertThrows(CacheFormatException.class,
          () -> WriteCache.openManual(mem, new DirectoryBackingStore(other),
              CacheFixture.manualConfig(BS)));
      assertTrue(e.getMessage().contains("belongs to backing directory " + root), e.getMessage());
    }
  }

  @Test
  @DisplayName("zero-filled and foreign files are told apart without writing")
  void inspectTellsZeroFromForeign() throws IOException {
    CrashingMemory zero = new CrashingMemory(64 * 1024);
    assertEquals(CacheLayout.Contents.ZERO_FILLED, CacheLayout.inspect(zero));
    byte[] foreign = new byte[64 * 1024];
    foreign[40_000] = 1;
    CrashingMemory f = CrashingMemory.of(foreign);
    assertEquals(CacheLayout.Contents.FOREIGN, CacheLayout.inspect(f));
    assertArrayEquals(foreign, f.image());
    assertEquals(CacheLayout.Contents.WCFS_CACHE, CacheLayout.inspect(mem));
  }

  @Test
  @DisplayName("uncommitted writes vanish, committed ones are served at once and written back")
  void uncommittedDropped() throws IOException {
    Files.write(root.resolve("a"), fill(3 * BS, 7));
    WriteCache c = open();
    CacheFixture.write(c, "a", 0, fill(BS, 1));
    c.commit();
    CacheFixture.write(c, "a", BS, fill(BS, 2));
    c.abandon();
    CrashingMemory after = mem.crash(new java.util.Random(1));
    mem = after;
    WriteCache r = open();
    byte[] expected = fill(3 * BS, 7);
    Arrays.fill(expected, 0, BS, (byte) 1);
    assertArrayEquals(expected, CacheFixture.read(r, "a"));
    r.flush(10_000);
    assertArrayEquals(expected, Files.readAllBytes(root.resolve("a")));
  }

  @Test
  @DisplayName("a file replaced behind the cache's back gets the cached data: the path wins")
  void replacedFileGetsCachedData() throws IOException {
    // Until 2026-11-30 a replaced file was left alone and its cached blocks dropped. Inode
    // numbers cannot tell a replaced file from a remounted network filesystem's renumbering,
    // and dropping fsync'd data on a guess is the worse error (DESIGN.md, "Identity").
    Files.createFile(root.resolve("a"));
    WriteCache c = open();
    CacheFixture.write(c, "a", 0, fill(BS, 1));
    c.commit();
    c.abandon();
    Files.write(root.resolve("b"), new byte[] {5});
    Files.move(root.resolve("b"), root.resolve("a"), StandardCopyOption.REPLACE_EXISTING);
    WriteCache r = open();
    assertEquals(1, r.stats().recovery().inodeHintMismatches());
    r.flush(10_000);
    assertArrayEquals(fill(BS, 1), Files.readAllBytes(root.resolve("a")));
  }
}
