package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
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
 * The engine's one hook for a claimed backing directory: before every writeback batch it asks
 * the backing store whether it may write back (a lapsed or taken-over claim says no). A "no"
 * must leave every block in the cache, readable, and written back once the answer is yes.
 */
@Timeout(60)
class WritebackGuardTest {
  private static final int BS = 512;
  @TempDir Path tmp;

  @Test
  @DisplayName("a writeback batch the backing store refuses writes nothing and keeps the data")
  void refusedBatchKeepsData() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.createFile(root.resolve("f"));
    // Its writes all work: only the engine's question before the batch says no.
    FailingBackingStore store = new FailingBackingStore(root);
    store.refuseWriteback = true;
    CrashingMemory mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS));
    try {
      byte[] data = new byte[7 * BS + 3];
      new Random(5).nextBytes(data);
      CacheFixture.write(cache, "f", 0, data);
      cache.commit();
      IOException e = assertThrows(IOException.class, cache::writebackStep);
      assertTrue(e.getMessage().contains("claim lost"), e.getMessage());
      assertEquals(0, Files.size(root.resolve("f")), "nothing reached the backing file");
      assertEquals(8, cache.stats().space().dirtyBlocks(), "every block stays in the cache");
      assertTrue(cache.stats().writeback().lastError().contains("claim lost"),
          "status shows why: " + cache.stats().writeback().lastError());
      assertArrayEquals(data, CacheFixture.read(cache, "f"), "reads still see the data");

      store.refuseWriteback = false;
      cache.flush(30_000);
      assertArrayEquals(data, Files.readAllBytes(root.resolve("f")));
      assertEquals(0, cache.stats().space().dirtyBlocks());
    } finally {
      store.refuseWriteback = false;
      cache.close();
    }
  }

  @Test
  @DisplayName("the store itself refuses writes, truncates, renames and unlinks while refused")
  void storeRefusesChanges() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.writeString(root.resolve("f"), "hello");
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    store.setWriteGuard(() -> {
      throw new IOException("claim lost (test)");
    });
    try (BackingStore.BackingFile f = store.open("f")) {
      assertThrows(IOException.class, () -> f.truncate(0));
      assertThrows(IOException.class, () -> f.write(0, 0, 0));
    }
    assertThrows(IOException.class, () -> store.rename("f", "g"));
    assertThrows(IOException.class, () -> store.unlink("f"));
    assertThrows(IOException.class, () -> store.createFile("h"));
    assertEquals("hello", Files.readString(root.resolve("f")));
    assertTrue(Files.notExists(root.resolve("h")));
    store.close();
  }
}
