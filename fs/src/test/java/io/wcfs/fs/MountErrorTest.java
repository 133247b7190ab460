package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * When libfuse cannot mount, the message a user sees names libfuse's (or fusermount's) own
 * reason and where the daemon's log is, instead of pointing at a log it does not show.
 */
@Timeout(300)
class MountErrorTest {
  Path tmp;
  Path cacheDir;
  Path backing;
  Path mnt;

  @BeforeEach
  void setUp() throws Exception {
    // Under /tmp with 0755 so that the user nobody can reach everything it is given.
    tmp = Files.createTempDirectory(Path.of("/tmp"), "wcfs-mounterr");
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
    cacheDir = Files.createDirectories(tmp.resolve("cache"));
    backing = Files.createDirectories(tmp.resolve("backing"));
    mnt = Files.createDirectories(tmp.resolve("m"));
  }

  @AfterEach
  void tearDown() throws Exception {
    if (Mounts.isWcfs(mnt.toRealPath())) {
      new ProcessBuilder("fusermount", "-u", "-z", mnt.toString()).start()
          .waitFor(30, TimeUnit.SECONDS);
    }
    WcfsProcess.deleteTree(tmp);
  }

  @Test
  @DisplayName("a FUSE option libfuse refuses: the message quotes libfuse and names the log")
  void libfuseReasonInMessage() throws Exception {
    // Options wcfs passes on (an unknown one it refuses itself, naming it) that libfuse
    // refuses together.
    WcfsProcess.Result r = WcfsProcess.run(60, "mount", "--cache-size", "16M", "-o",
        "allow_other,allow_root", cacheDir.toString(), backing.toString(), mnt.toString());
    assertNotEquals(0, r.exitCode(), r.all());
    assertFalse(Mounts.isWcfs(mnt.toRealPath()), "nothing mounted");
    assertFalse(r.err().contains("in the log above"), r.all());
    assertTrue(r.err().contains("libfuse could not mount") && r.err().contains("mutually exclusive"),
        "libfuse's reason in the message: " + r.all());
    assertTrue(r.err().contains(cacheDir.resolve("wcfs.log").toString()), "the log named: "
        + r.all());
    assertEquals(1, r.err().trim().lines().count(), "one message: " + r.all());
  }

  @Test
  @DisplayName("a user who may not open /dev/fuse is told so, with the fix and the log")
  void devFuseNotAccessible() throws Exception {
    Assumptions.assumeFalse(asNobody("test -r /dev/fuse -a -w /dev/fuse") == 0,
        "/dev/fuse is open to every user here (mode 0666): nothing to refuse");
    for (Path p : List.of(cacheDir, backing, mnt)) {
      Files.setOwner(p, p.getFileSystem().getUserPrincipalLookupService()
          .lookupPrincipalByName("nobody"));
    }
    Path run = Files.createDirectories(tmp.resolve("run"));
    Files.setOwner(run, run.getFileSystem().getUserPrincipalLookupService()
        .lookupPrincipalByName("nobody"));
    String classpath = readableClasspath();
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String[] said = {""};
    int rc = asNobody("cd " + tmp + " && WCFS_RUNTIME_DIR=" + run + " " + java + " -cp "
        + classpath + " " + Main.class.getName() + " mount --cache-size 16M " + cacheDir + " "
        + backing + " " + mnt, said);
    assertNotEquals(0, rc, said[0]);
    assertFalse(Mounts.isWcfs(mnt.toRealPath()), "nothing mounted");
    assertFalse(said[0].contains("in the log above"), said[0]);
    assertTrue(said[0].contains("/dev/fuse") && said[0].contains("Permission denied"),
        "the reason in the message: " + said[0]);
    assertTrue(said[0].contains("chmod 0666 /dev/fuse"), "the fix in the message: " + said[0]);
    assertTrue(said[0].contains(cacheDir.resolve("wcfs.log").toString()), "the log named: "
        + said[0]);
  }

  /** The test's classpath with every entry nobody cannot read (~root/.m2) copied under tmp. */
  private String readableClasspath() throws Exception {
    Path jars = Files.createDirectories(tmp.resolve("jars"));
    List<String> entries = new ArrayList<>();
    for (String e : System.getProperty("java.class.path").split(":")) {
      Path p = Path.of(e);
      if (!Files.exists(p)) {
        continue;
      }
      if (Files.isRegularFile(p) && asNobody("test -r " + p) != 0) {
        Path copy = jars.resolve(entries.size() + "-" + p.getFileName());
        Files.copy(p, copy, StandardCopyOption.REPLACE_EXISTING);
        Files.setPosixFilePermissions(copy, PosixFilePermissions.fromString("rw-r--r--"));
        p = copy;
      }
      entries.add(p.toString());
    }
    return String.join(":", entries);
  }

  private static int asNobody(String command) throws Exception {
    return asNobody(command, new String[1]);
  }

  /** Runs a shell command as nobody; its output goes to {@code output[0]}. */
  private static int asNobody(String command, String[] output) throws Exception {
    Process p = new ProcessBuilder("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        "sh", "-c", command).redirectErrorStream(true).start();
    output[0] = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(120, TimeUnit.SECONDS));
    return p.exitValue();
  }
}
