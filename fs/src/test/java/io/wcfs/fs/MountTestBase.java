package io.wcfs.fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInstance;

/** One real mount shared by the tests of a class; unmounted after them whatever happened. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class MountTestBase {
  Path tmp;
  WcfsProcess wcfs;
  Path backing;
  Path mnt;
  Path reference;

  String[] mountOptions() {
    return new String[0];
  }

  @BeforeAll
  void mountIt() throws Exception {
    tmp = Files.createTempDirectory("wcfs-" + getClass().getSimpleName());
    backing = Files.createDirectories(tmp.resolve("backing"));
    mnt = Files.createDirectories(tmp.resolve("mnt"));
    reference = Files.createDirectories(tmp.resolve("reference"));
    wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir(getClass().getSimpleName()), backing, mnt);
    wcfs.mount(mountOptions());
  }

  @AfterAll
  void unmountIt() throws IOException, InterruptedException {
    try {
      if (wcfs != null) {
        wcfs.close();
      }
    } finally {
      if (wcfs != null) {
        WcfsProcess.deleteTree(wcfs.cacheDir);
      }
      WcfsProcess.deleteTree(tmp);
    }
  }
}
