package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Every way a mount can end writes everything back before the daemon exits. */
@Timeout(300)
class UnmountPathsTest {
  @TempDir Path tmp;
  WcfsProcess wcfs;

  @BeforeEach
  void setUp() throws Exception {
    wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir("unmount"),
        Files.createDirectories(tmp.resolve("backing")), Files.createDirectories(tmp.resolve("m")));
  }

  @AfterEach
  void tearDown() throws Exception {
    try {
      wcfs.close();
    } finally {
      WcfsProcess.deleteTree(wcfs.cacheDir);
    }
  }

  @DisplayName("data written without fsync reaches the backing directory when the mount ends")
  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"wcfs umount", "fusermount -u", "umount", "SIGTERM"})
  void drainsBeforeExit(String how) throws Exception {
    wcfs.mount("--autocommit-time", "60000", "--autocommit-blocks", "100000");
    byte[] data = new byte[3 << 20];
    new Random(how.hashCode()).nextBytes(data);
    Files.write(wcfs.mountpoint.resolve("f"), data); // no fsync: only in the cache
    long pid = wcfs.daemonPid();
    ProcessHandle daemon = ProcessHandle.of(pid).orElseThrow();
    switch (how) {
      case "wcfs umount" -> wcfs.umount();
      case "fusermount -u" -> run("fusermount", "-u", wcfs.mountpoint.toString());
      case "umount" -> run("umount", wcfs.mountpoint.toString());
      default -> run("kill", "-TERM", Long.toString(pid));
    }
    daemon.onExit().get(120, TimeUnit.SECONDS);
    wcfs.markUnmounted();
    assertFalse(Mounts.isWcfs(wcfs.mountpoint.toRealPath()), "unmounted");
    assertArrayEquals(data, Files.readAllBytes(wcfs.backing.resolve("f")), how);
    WcfsProcess.Result check = WcfsProcess.run(60, "check", wcfs.cacheDir.toString());
    assertTrue(check.out().contains("committed blocks   0"), check.all());
  }

  private static void run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0,
        String.join(" ", cmd) + ": " + out);
  }
}
