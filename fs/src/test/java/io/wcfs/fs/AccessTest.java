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
  @DisplayName("a cache file that cannot be written is refused, untouched")
  void unwritableCacheRefused() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("b"));
    Path mnt = Files.createDirectories(tmp.resolve("m"));
    Path cache = Files.createDirectories(tmp.resolve("c"));
    Path file = cache.resolve("wcfs.cache");
    Files.write(file, new byte[1 << 20]);
    // Root may write any file by its mode; an immutable one it may not (ext4, xfs, btrfs).
    Process chattr = new ProcessBuilder("chattr", "+i", file.toString()).start();
    org.junit.jupiter.api.Assumptions.assumeTrue(chattr.waitFor() == 0,
        "chattr +i is not supported on " + tmp);
    try {
      WcfsProcess.Result r = WcfsProcess.run(60, "mount", cache.toString(), backing.toString(),
          mnt.toString());
      assertEquals(2, r.exitCode(), r.all());
      assertTrue(r.err().contains("is not readable and writable by this user"), r.all());
      assertTrue(java.util.Arrays.equals(new byte[1 << 20], Files.readAllBytes(file)));
    } finally {
      new ProcessBuilder("chattr", "-i", file.toString()).start().waitFor();
    }
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
