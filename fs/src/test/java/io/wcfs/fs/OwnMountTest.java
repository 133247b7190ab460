package io.wcfs.fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;

/** Tests that mount, kill and remount themselves: a fresh cache, backing and mount point each. */
abstract class OwnMountTest {
  @TempDir Path tmp;
  WcfsProcess wcfs;

  @BeforeEach
  void createMount() throws IOException {
    wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir(getClass().getSimpleName()),
        Files.createDirectories(tmp.resolve("backing")), Files.createDirectories(tmp.resolve("m")));
  }

  /** Unmounts whatever the test left mounted, then removes the cache. */
  @AfterEach
  void removeMount() throws Exception {
    try {
      wcfs.close();
    } finally {
      WcfsProcess.deleteTree(wcfs.cacheDir);
    }
  }
}
