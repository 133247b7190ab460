package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Who may enter a mount, checked as the unprivileged user nobody. */
@Timeout(300)
class AccessTest {
  Path tmp;
  Path cacheDir;

  @BeforeEach
  void setUp() throws Exception {
    // Under /tmp with 0755 so that nobody can reach the mount point at all.
    tmp = Files.createTempDirectory(Path.of("/tmp"), "wcfs-access");
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
    cacheDir = WcfsProcess.tmpfsCacheDir("access");
  }

  @AfterEach
  void tearDown() throws Exception {
    WcfsProcess.deleteTree(cacheDir);
    WcfsProcess.deleteTree(tmp);
  }

  /** Runs a shell command as nobody; returns its exit code. */
  private static int asNobody(String command) throws Exception {
    Process p = new ProcessBuilder("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        "sh", "-c", command).redirectErrorStream(true).start();
    p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(30, TimeUnit.SECONDS));
    return p.exitValue();
  }

  private Path prepare(Path root) throws Exception {
    Files.createDirectories(root);
    Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwxr-xr-x"));
    Files.writeString(root.resolve("public"), "p");
    Files.setPosixFilePermissions(root.resolve("public"), PosixFilePermissions.fromString("rw-r--r--"));
    Files.writeString(root.resolve("secret"), "s");
    Files.setPosixFilePermissions(root.resolve("secret"), PosixFilePermissions.fromString("rw-------"));
    return root;
  }

  @Test
  @DisplayName("without allow_other another user cannot enter; with it, modes are enforced"
      + " as on a plain directory; cache file and socket are owner-only")
  void accessMatchesPlainDirectory() throws Exception {
    Path backing = prepare(tmp.resolve("backing"));
    Path plain = prepare(tmp.resolve("plain"));
    Path mnt = Files.createDirectories(tmp.resolve("mnt"));
    Files.setPosixFilePermissions(mnt, PosixFilePermissions.fromString("rwxr-xr-x"));
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing, mnt)) {
      w.mount("--cache-size", "16M");
      assertTrue(asNobody("ls " + mnt) != 0, "nobody must not enter a mount without"
          + " allow_other");
      assertEquals("rw-------", PosixFilePermissions.toString(
          Files.getPosixFilePermissions(cacheDir.resolve("wcfs.cache"))));
      assertEquals("rw-------", PosixFilePermissions.toString(
          Files.getPosixFilePermissions(RuntimeDir.socketFor(mnt.toRealPath()))));
      w.umount();
      w.mount("-o", "allow_other");
      for (String cmd : new String[] {"cat %s/public", "cat %s/secret", "echo x > %s/public",
          "echo x > %s/new", "ls %s"}) {
        assertEquals(asNobody(String.format(cmd, plain)), asNobody(String.format(cmd, mnt)),
            cmd + ": same outcome as on a plain directory");
      }
    }
  }
}
