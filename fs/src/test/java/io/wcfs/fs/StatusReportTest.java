package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.core.CacheConfig;
import io.wcfs.core.CacheLayout;
import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.PmemCacheMemory;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.CacheFiles;
import io.wcfs.nativ.FlushStrategy;
import io.wcfs.nativ.NativeBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The status fields a cache on a disk adds, from a real engine (no mount needed). */
class StatusReportTest {
  @TempDir Path tmp;

  @Test
  @DisplayName("status shows device_flushes next to flushes: at most 2 per commit on a disk")
  void deviceFlushes() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("backing"));
    Path cacheFile = tmp.resolve("cache");
    CacheFiles.create(cacheFile, 4 << 20, CacheLayout.Geometry.minFileSize(4096));
    WriteCache cache = WriteCache.format(
        PmemCacheMemory.open(cacheFile, FlushStrategy.MSYNC, true),
        new DirectoryBackingStore(root), CacheConfig.DEFAULTS.withWatermarks(100, 100));
    try (NativeBuffer buf = new NativeBuffer(64 * 4096)) {
      Files.createFile(root.resolve("f"));
      WriteCache.OpenFile h = cache.open("f");
      Map<String, Object> before = StatusReport.fields(cache.stats(), Map.of());
      for (int i = 0; i < 3; i++) {
        cache.write(h, 0, buf.address(), 64 * 4096);
        cache.commit();
      }
      cache.close(h);
      Map<String, Object> after = StatusReport.fields(cache.stats(), Map.of());
      long commits = (long) after.get("flushes") - (long) before.get("flushes");
      long device = (long) after.get("device_flushes") - (long) before.get("device_flushes");
      assertEquals(3, commits);
      assertTrue(device >= commits && device <= 2 * commits,
          device + " device flushes for " + commits + " commits");
      assertTrue(StatusReport.json(after).contains("\"device_flushes\": "),
          StatusReport.json(after));
    } finally {
      cache.close();
    }
  }
}
