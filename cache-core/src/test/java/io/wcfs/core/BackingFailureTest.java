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

@Timeout(60)
class BackingFailureTest {
  private static final int BS = 512;
  @TempDir Path tmp;

  @Test
  @DisplayName("writeback errors keep data cached, are counted and retried, lose nothing")
  void failingBackingStoreLosesNothing() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.createFile(root.resolve("f"));
    FailingBackingStore store = new FailingBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
    // The real writeback thread, cleaner mode: it tries to write back at once.
    WriteCache cache = WriteCache.open(mem, store,
        CacheFixture.manualConfig(BS).withCleaner(true));
    try {
      store.failing = true;
      byte[] data = new byte[10 * BS + 17];
      new Random(3).nextBytes(data);
      CacheFixture.write(cache, "f", 0, data);
      cache.commit();
      IOException e = assertThrows(IOException.class, () -> cache.flush(1500));
      assertTrue(e.getMessage().contains("still dirty"), e.getMessage());
      CacheStats stats = cache.stats();
      assertTrue(stats.writebackErrors() >= 1, "errors counted: " + stats);
      assertTrue(stats.lastWritebackError().contains("injected"), stats.lastWritebackError());
      assertEquals(11, stats.dirtyBlocks(), "blocks stay in the cache");
      assertArrayEquals(data, CacheFixture.read(cache, "f"), "reads still see the data");
      assertEquals(0, Files.size(root.resolve("f")));
      store.failing = false;
      cache.flush(30_000);
      assertArrayEquals(data, Files.readAllBytes(root.resolve("f")));
      assertEquals(0, cache.stats().dirtyBlocks());
    } finally {
      store.failing = false;
      cache.close();
    }
  }

  @Test
  @DisplayName("a full cache with a stuck backing store makes writers wait, visibly, not fail")
  void fullCacheBlocksWriters() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.createFile(root.resolve("f"));
    FailingBackingStore store = new FailingBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(16, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.open(mem, store, CacheFixture.manualConfig(BS));
    try {
      store.failing = true;
      byte[] data = new byte[40 * BS];
      new Random(4).nextBytes(data);
      Thread writer = new Thread(() -> {
        try {
          CacheFixture.write(cache, "f", 0, data);
        } catch (IOException e) {
          throw new RuntimeException(e);
        }
      });
      writer.start();
      long deadline = System.currentTimeMillis() + 10_000;
      while (cache.stats().writesBlockedOnFreelist() == 0 && System.currentTimeMillis() < deadline) {
        Thread.sleep(20);
      }
      assertTrue(cache.stats().writesBlockedOnFreelist() > 0, "writer waits for free blocks");
      assertTrue(writer.isAlive(), "writer still waiting, not failed");
      store.failing = false;
      writer.join(30_000);
      cache.flush(30_000);
      assertArrayEquals(data, Files.readAllBytes(root.resolve("f")));
    } finally {
      store.failing = false;
      cache.close();
    }
  }
}
