package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Every way a mount can end writes everything back before the daemon exits. */
@Timeout(300)
class UnmountPathsTest extends OwnMountTest {

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

  @org.junit.jupiter.api.Test
  @DisplayName("kill -9 during writeback at unmount: the next mount finishes the job")
  void killDuringUnmount() throws Exception {
    wcfs.mount("--cache-size", "256M", "--high-watermark", "100", "--low-watermark", "100");
    byte[] data = new byte[96 << 20];
    new Random(9).nextBytes(data);
    try (java.nio.channels.FileChannel c = java.nio.channels.FileChannel.open(
        wcfs.mountpoint.resolve("big"), java.nio.file.StandardOpenOption.CREATE,
        java.nio.file.StandardOpenOption.WRITE)) {
      c.write(java.nio.ByteBuffer.wrap(data));
      c.force(true);
    }
    long pid = wcfs.daemonPid();
    Process umount = new ProcessBuilder(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
        System.getProperty("java.class.path"), Main.class.getName(), "umount",
        wcfs.mountpoint.toString()).redirectErrorStream(true).start();
    Thread.sleep(300); // writeback of 96 MiB is under way
    new ProcessBuilder("kill", "-9", Long.toString(pid)).start().waitFor();
    umount.waitFor(60, TimeUnit.SECONDS);
    ProcessHandle.of(pid).ifPresent(h -> h.onExit().join());
    new ProcessBuilder("fusermount", "-u", "-z", wcfs.mountpoint.toString()).start().waitFor();
    wcfs.markUnmounted();
    wcfs.mount();
    assertArrayEquals(data, Files.readAllBytes(wcfs.mountpoint.resolve("big")), "after remount");
    wcfs.umount();
    assertArrayEquals(data, Files.readAllBytes(wcfs.backing.resolve("big")), "backing");
  }

  private static void run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0,
        String.join(" ", cmd) + ": " + out);
  }
}
