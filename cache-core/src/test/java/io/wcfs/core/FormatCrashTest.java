package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A crash during format must leave a file the next mount formats again (zero-filled, or
 * recognisably a format in progress) or a complete cache, never one it refuses as foreign.
 */
@Timeout(120)
class FormatCrashTest {
  private static final int BS = 512;
  @TempDir Path tmp;

  @Test
  @DisplayName("a crash at any point of format leaves a file the next mount formats or opens")
  void crashAnywhereInFormat() throws IOException {
    Path root = Files.createDirectories(tmp.resolve("b"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    int operations = countFormatOperations(store);
    Random random = new Random(42);
    for (int n = 0; n < operations; n++) {
      CrashingMemory mem = CacheFixture.memoryFor(64, BS);
      mem.crashAfter(n);
      int crashAt = n;
      assertThrows(CrashingMemory.SimulatedCrash.class,
          () -> CacheLayout.format(mem, BS, store.identity()),
          () -> "format finished within " + crashAt + " operations");
      // What a restart finds: everything committed, and any subset of the rest.
      CrashingMemory after = mem.crash(random);
      CacheLayout.Contents found = CacheLayout.inspect(after);
      assertNotEquals(CacheLayout.Contents.FOREIGN, found,
          "a crash after " + n + " of format's " + operations + " operations left a file the"
              + " next mount refuses as foreign");
      if (found == CacheLayout.Contents.WCFS_CACHE) {
        CacheLayout.open(after, store.identity()); // complete: opens as it is
      } else {
        // What a mount does with it: format, then open and use it.
        WriteCache.format(after, store, CacheFixture.manualConfig(BS)).close();
        assertEquals(CacheLayout.Contents.WCFS_CACHE, CacheLayout.inspect(after));
      }
    }
  }

  @Test
  @DisplayName("a foreign file is still refused and left untouched, even one that starts with"
      + " zeros where the magic goes")
  void foreignStillRefused() throws IOException {
    byte[] foreign = new byte[(int) CacheLayout.Geometry.of(64, BS).fileSize()];
    new Random(7).nextBytes(foreign);
    java.util.Arrays.fill(foreign, 0, 8, (byte) 0);
    CrashingMemory f = CrashingMemory.of(foreign);
    assertEquals(CacheLayout.Contents.FOREIGN, CacheLayout.inspect(f));
    CacheFormatException e = assertThrows(CacheFormatException.class,
        () -> CacheLayout.open(f, null));
    assertTrue(e.getMessage().contains("not a wcfs cache"), e.getMessage());
    assertArrayEquals(foreign, f.image());
  }

  /** How many memory operations a whole format takes. */
  private static int countFormatOperations(DirectoryBackingStore store) throws IOException {
    for (int n = 0; ; n++) {
      CrashingMemory mem = CacheFixture.memoryFor(64, BS);
      mem.crashAfter(n);
      try {
        CacheLayout.format(mem, BS, store.identity());
        return n;
      } catch (CrashingMemory.SimulatedCrash e) {
        // not yet
      }
    }
  }
}
