package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.nativ.CacheFiles;
import io.wcfs.nativ.FlushStrategy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The cache on a disk (strategy msync, a page-cache mapping): a commit costs at most two device
 * flushes (data, entries and file versions; then seq_count) whatever the number of blocks it
 * covers, also when it replaces committed blocks (copy-on-write) whose old versions it frees.
 * Counted by the memory's device-flush counter as {@code wcfs status} shows it.
 */
class DeviceFlushesTest {
  private static final int BS = 4096;
  private static final int BLOCKS = 256;

  @TempDir Path tmp;

  @DisplayName("a commit of many blocks costs at most 2 device flushes with the msync strategy")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void commitCostsAtMostTwoDeviceFlushes(boolean fallback) throws Exception {
    Path root = Files.createDirectories(tmp.resolve("backing"));
    Path cacheFile = tmp.resolve("cache");
    CacheFiles.create(cacheFile, 8 << 20, CacheLayout.Geometry.minFileSize(BS));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    PmemCacheMemory mem = PmemCacheMemory.open(cacheFile, FlushStrategy.MSYNC, fallback);
    Assumptions.assumeTrue(fallback
        || mem.persistentMemory().backend() == io.wcfs.nativ.PersistentMemory.Backend.LIBPMEM,
        "libpmem is not installed");
    // No writeback, no autocommit: every device flush counted below is the commit's.
    CacheConfig cfg = CacheConfig.DEFAULTS.withWatermarks(100, 100)
        .withAutocommit(1 << 20, 1 << 30);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, cfg);
    try {
      byte[] data = new byte[BLOCKS * BS];
      new Random(1).nextBytes(data);
      Files.createFile(root.resolve("f"));
      Files.createFile(root.resolve("g"));

      long before = cache.stats().commits().deviceFlushes();
      CacheFixture.write(cache, "f", 0, data);
      cache.commit();
      long fresh = cache.stats().commits().deviceFlushes() - before;
      assertTrue(fresh >= 1 && fresh <= 2,
          "commit of " + BLOCKS + " new blocks: " + fresh + " device flushes");

      // Overwrite every committed block (each gets a new slot, the old one is freed after
      // the commit) and write a second file: still at most two.
      new Random(2).nextBytes(data);
      before = cache.stats().commits().deviceFlushes();
      CacheFixture.write(cache, "f", 0, data);
      CacheFixture.write(cache, "g", 0, data);
      cache.commit();
      long overwrite = cache.stats().commits().deviceFlushes() - before;
      assertTrue(overwrite >= 1 && overwrite <= 2, "commit of " + BLOCKS + " overwritten blocks"
          + " and " + BLOCKS + " new ones: " + overwrite + " device flushes");

      // And again, now that the previous commit's frees are pending.
      new Random(3).nextBytes(data);
      before = cache.stats().commits().deviceFlushes();
      CacheFixture.write(cache, "f", 0, data);
      cache.commit();
      long again = cache.stats().commits().deviceFlushes() - before;
      assertTrue(again >= 1 && again <= 2,
          "commit of " + BLOCKS + " overwritten blocks: " + again + " device flushes");
      assertArrayEquals(data, CacheFixture.read(cache, "f"));

      // An fsync with nothing new to commit costs none.
      before = cache.stats().commits().deviceFlushes();
      cache.commit();
      assertEquals(0, cache.stats().commits().deviceFlushes() - before, "empty commit");
    } finally {
      cache.abandon(); // as if the daemon were killed: no writeback
      mem.close();
    }
    // Nothing was lost by freeing later: reopen (as after a crash) and read back.
    PmemCacheMemory again = PmemCacheMemory.open(cacheFile, FlushStrategy.MSYNC, fallback);
    WriteCache r = WriteCache.openManual(again, store, cfg);
    try {
      byte[] expect = new byte[BLOCKS * BS];
      new Random(3).nextBytes(expect);
      assertArrayEquals(expect, CacheFixture.read(r, "f"));
    } finally {
      r.abandon();
      again.close();
    }
  }
}
