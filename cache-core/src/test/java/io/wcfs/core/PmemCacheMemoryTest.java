package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.wcfs.nativ.CacheFiles;
import io.wcfs.nativ.FlushStrategy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The engine over a real mapped cache file, through libpmem and through the fallback. */
class PmemCacheMemoryTest {
  @TempDir Path tmp;

  @DisplayName("commit, abandon (as a crash), reopen: data is recovered and written back")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void recoversFromMappedFile(boolean fallback) throws Exception {
    Path root = Files.createDirectories(tmp.resolve("backing"));
    Files.createFile(root.resolve("f"));
    Path cacheFile = tmp.resolve("cache");
    CacheFiles.create(cacheFile, 4 << 20, CacheLayout.Geometry.minFileSize(4096));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    byte[] data = new byte[3 * 4096 + 100];
    new Random(2).nextBytes(data);
    CacheConfig cfg = CacheConfig.DEFAULTS.withWatermarks(100, 100);
    WriteCache c = WriteCache.format(PmemCacheMemory.open(cacheFile, FlushStrategy.AUTO,
        fallback), store, cfg);
    CacheFixture.write(c, "f", 0, data);
    c.commit();
    c.abandon(); // no writeback, as after kill -9
    WriteCache r = WriteCache.open(PmemCacheMemory.open(cacheFile, FlushStrategy.AUTO,
        fallback), store, cfg);
    assertArrayEquals(data, CacheFixture.read(r, "f"));
    r.close();
    assertArrayEquals(data, Files.readAllBytes(root.resolve("f")));
  }
}
