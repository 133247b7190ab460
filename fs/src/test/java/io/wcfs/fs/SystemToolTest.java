package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * wcfs as a system tool: install and uninstall into a temporary prefix, fstab lines mounted by
 * mount(8) through the installed helper, every mount option as -o name=value, the mistakes an
 * admin makes, and status --watch.
 *
 * <p>mount(8) finds helpers only in /sbin. The fstab test therefore runs in a private mount
 * namespace (unshare -m) where an overlay puts the temporary prefix's sbin over /usr/sbin; the
 * real /sbin, /usr/local and /etc/fstab are never written. Its mounts live only in that
 * namespace, and the daemons it started are stopped (SIGTERM, then SIGKILL) whatever happens.
 */
@Timeout(600)
class SystemToolTest {
  Path tmp;
  Path cacheDir;
  Path backing;
  Path mnt;

  @BeforeEach
  void setUp() throws Exception {
    tmp = Files.createTempDirectory("wcfs-SystemToolTest");
    cacheDir = WcfsProcess.tmpfsCacheDir("systool");
    backing = Files.createDirectories(tmp.resolve("backing"));
    mnt = Files.createDirectories(tmp.resolve("mnt"));
    Files.writeString(backing.resolve("keep"), "user data");
  }

  @AfterEach
  void tearDown() throws Exception {
    WcfsProcess.deleteTree(cacheDir);
    WcfsProcess.deleteTree(tmp);
  }

  private static final List<Path> SYSTEM_FILES = List.of(Path.of("/usr/local/bin/wcfs"),
      Path.of("/usr/local/lib/wcfs"), Path.of("/sbin/mount.wcfs"));

  /** Which of the real install locations exist now (tests must never add any). */
  private static List<Boolean> systemFiles() {
    return SYSTEM_FILES.stream().map(Files::exists).toList();
  }

  @Test
  @DisplayName("install --prefix puts an executable wcfs, the helper and a manifest there;"
      + " uninstall removes exactly them")
  void installAndUninstall() throws Exception {
    List<Boolean> before = systemFiles();
    Path prefix = tmp.resolve("prefix");
    WcfsProcess.Result r = WcfsProcess.run(60, "install", "--prefix", prefix.toString());
    assertEquals(0, r.exitCode(), r.all());
    Path launcher = prefix.resolve("bin/wcfs");
    Path helper = prefix.resolve("sbin/mount.wcfs");
    for (Path p : List.of(launcher, helper)) {
      assertTrue(Files.isExecutable(p), p + " is not executable");
      assertEquals("rwxr-xr-x", PosixFilePermissions.toString(Files.getPosixFilePermissions(p)));
    }
    assertTrue(Files.readString(helper).contains(launcher + "' mount.wcfs"),
        Files.readString(helper));
    Process p = new ProcessBuilder(launcher.toString(), "--version").redirectErrorStream(true)
        .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS));
    assertEquals(0, p.exitValue(), out);
    assertTrue(out.startsWith("wcfs "), out);

    r = WcfsProcess.run(60, "uninstall", "--prefix", prefix.toString());
    assertEquals(0, r.exitCode(), r.all());
    try (Stream<Path> s = Files.walk(prefix)) {
      assertEquals(List.of(), s.filter(Files::isRegularFile).toList(), "left behind");
    }
    assertFalse(Files.exists(prefix.resolve("lib/wcfs")));
    assertEquals(before, systemFiles(), "the real /usr/local or /sbin was touched");
  }

  /** The pids of the wcfs daemons serving mounts below {@code tmp} (any namespace). */
  private List<Long> daemonsUnder(Path dir) {
    return ProcessHandle.allProcesses().filter(h -> h.info().arguments()
        .map(a -> String.join(" ", a).contains("--foreground")
            && String.join(" ", a).contains(dir.toString())).orElse(false))
        .map(ProcessHandle::pid).toList();
  }

  private void stopDaemons(Path dir) throws Exception {
    for (long pid : daemonsUnder(dir)) {
      ProcessHandle h = ProcessHandle.of(pid).orElse(null);
      if (h != null) {
        h.destroy(); // SIGTERM: unmounts in its namespace and writes back
        try {
          h.onExit().get(60, TimeUnit.SECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
          h.destroyForcibly();
        }
      }
    }
  }

  @Test
  @DisplayName("fstab: mount MOUNTPOINT and mount -a through the installed helper, wcfs options"
      + " as -o name=value, mount(8)'s own options ignored; umount writes back")
  void fstabThroughTheHelper() throws Exception {
    List<Boolean> before = systemFiles();
    Path prefix = tmp.resolve("prefix");
    WcfsProcess.Result r = WcfsProcess.run(60, "install", "--prefix", prefix.toString());
    assertEquals(0, r.exitCode(), r.all());
    Path backing2 = Files.createDirectories(tmp.resolve("backing2"));
    Path mnt2 = Files.createDirectories(tmp.resolve("mnt2"));
    Path cache2 = WcfsProcess.tmpfsCacheDir("systool2");
    Path fstab = tmp.resolve("fstab");
    Files.writeString(fstab, "# a temporary fstab: never /etc/fstab\n"
        + backing + " " + mnt + " wcfs cache=" + cacheDir + ",cache_size=64M,noauto,_netdev,"
        + "nofail,x-systemd.requires-mounts-for=/dev/shm,x-systemd.mount-timeout=5min 0 0\n"
        + backing2 + " " + mnt2 + " wcfs defaults,cache=" + cache2 + ",cache-size=64M,"
        + "block_size=8192,high_watermark=60,allow_other,nosuid,nodev 0 0\n");
    Path sbinUpper = prefix.resolve("sbin");
    String launcher = prefix.resolve("bin/wcfs").toString();
    String script = String.join("\n",
        "set -u",
        "mount -t overlay wcfs-test -o lowerdir=" + sbinUpper + ":/usr/sbin /usr/sbin"
            + " || { echo OVERLAY-FAILED; exit 1; }",
        "mount -T " + fstab + " " + mnt + "; echo \"mount rc=$?\"",
        "mount -a -T " + fstab + "; echo \"mount -a rc=$?\"",
        "mount -a -T " + fstab + "; echo \"mount -a again rc=$?\"",
        "echo \"types: $(findmnt -n -o FSTYPE -M " + mnt + ") $(findmnt -n -o FSTYPE -M " + mnt2
            + ")\"",
        "echo one > " + mnt + "/one && cat " + mnt + "/one",
        "echo two > " + mnt2 + "/two && cat " + mnt2 + "/two",
        launcher + " status " + mnt2 + " | grep -E '^block_size'",
        "pid=$(" + launcher + " status --json " + mnt + " | sed 's/.*\"pid\": \\([0-9]*\\).*/\\1/')",
        "umount " + mnt + "; echo \"umount rc=$?\"",
        "while kill -0 $pid 2>/dev/null; do sleep 0.1; done; echo daemon exited",
        "cat " + backing + "/one | sed 's/^/backing: /'",
        launcher + " umount " + mnt2 + "; echo \"wcfs umount rc=$?\"",
        "cat " + backing2 + "/two | sed 's/^/backing2: /'");
    ProcessBuilder pb = new ProcessBuilder("unshare", "-m", "--propagation", "private", "sh",
        "-c", script).redirectErrorStream(true);
    pb.environment().put("PMEM_IS_PMEM_FORCE", "1");
    String out;
    try {
      Process p = pb.start();
      out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(300, TimeUnit.SECONDS), "the namespace script did not finish");
    } finally {
      stopDaemons(tmp);
      stopDaemons(cacheDir);
      WcfsProcess.deleteTree(cache2);
    }
    for (String line : List.of("mount rc=0", "mount -a rc=0", "mount -a again rc=0",
        "types: fuse.wcfs fuse.wcfs", "one", "two", "block_size                   8192", "umount rc=0",
        "daemon exited", "backing: one", "wcfs umount rc=0", "backing2: two")) {
      assertTrue(out.lines().anyMatch(l -> l.equals(line)), "no line '" + line + "' in:\n"
          + out);
    }
    assertEquals(before, systemFiles(), "the real /usr/local or /sbin was touched");
    assertEquals(null, Mounts.typeAt(mnt), "a mount leaked out of the namespace");
  }

  private void assertNothingMountedOrCreated() throws Exception {
    assertEquals(null, Mounts.typeAt(mnt.toRealPath()), "something was mounted");
    try (Stream<Path> s = Files.list(cacheDir)) {
      assertEquals(List.of(), s.toList(), "the cache directory changed");
    }
    try (Stream<Path> s = Files.list(backing)) {
      assertEquals(List.of(backing.resolve("keep")), s.toList(), "the backing directory"
          + " changed");
    }
  }

  /** Runs a mistake: exit 2, one line naming the problem (and {@code expect}), nothing done. */
  private void assertRefused(String expect, String... args) throws Exception {
    WcfsProcess.Result r = WcfsProcess.run(Map.of(), 60, args);
    assertEquals(2, r.exitCode(), r.all());
    String err = r.err().strip();
    assertEquals(1, err.lines().count(), "one sentence: " + err);
    assertTrue(err.contains(expect), err);
    assertNothingMountedOrCreated();
  }

  @Test
  @DisplayName("bad input: an unknown -o option, an fstab line without cache=, a metrics address"
      + " in use, a value given twice: one sentence, exit 2, nothing mounted or changed")
  void mistakes() throws Exception {
    String c = cacheDir.toString();
    String b = backing.toString();
    String m = mnt.toString();
    assertRefused("unknown mount option 'bogus=1'", "mount", "-o", "allow_other,bogus=1", c, b,
        m);
    assertRefused("unknown mount option 'relatme'", "mount", "-o", "relatme", c, b, m);
    assertRefused("needs a value", "mount", "-o", "block_size", c, b, m);
    assertRefused("not a whole number", "mount", "-o", "threads=many", c, b, m);
    assertRefused("both given", "mount", "--block-size", "4096", "-o", "block_size=8192", c, b,
        m);
    assertRefused("has no cache= option", "mount.wcfs", b, m, "-o", "noauto,_netdev");
    assertRefused("unknown mount option 'cahce=/x'", "mount.wcfs", b, m, "-o", "cahce=/x");
    try (ServerSocket taken = new ServerSocket()) {
      taken.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      int port = taken.getLocalPort();
      assertRefused("metrics address 127.0.0.1:" + port + " is in use", "mount", "--metrics",
          "127.0.0.1:" + port, c, b, m);
      assertRefused("metrics address 127.0.0.1:" + port + " is in use", "mount.wcfs", b, m,
          "-o", "cache=" + c + ",metrics=" + port);
    }
    assertRefused("no valid port", "mount", "-o", "metrics=localhost:http", c, b, m);
  }

  @Test
  @DisplayName("every wcfs mount option works as -o name=value")
  void optionsAsMountOptions() throws Exception {
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing, mnt)) {
      w.mount("-o", "block_size=8192,high-watermark=70,low_watermark=60,writeback_jobs=64,"
          + "autocommit_blocks=32,autocommit_time=500,max_age=10000,flush_strategy=eager,"
          + "threads=4,spin_us=10,cleaner,noxattr,_netdev,noauto,x-systemd.automount");
      assertEquals(8192, w.statusNumber("block_size"));
      String status = WcfsProcess.run(30, "status", mnt.toString()).out();
      assertTrue(status.contains("off (-o noxattr)"), status);
      String cmd = ProcessHandle.of(w.daemonPid()).orElseThrow().info().arguments()
          .map(a -> String.join(" ", a)).orElse("");
      for (String flag : List.of("--high-watermark 70", "--low-watermark 60",
          "--writeback-jobs 64", "--autocommit-blocks 32", "--autocommit-time 500",
          "--max-age 10000", "--flush-strategy eager", "--threads 4", "--spin-us 10",
          "--cleaner", "--no-xattr")) {
        assertTrue(cmd.contains(flag), flag + " not in the daemon's command line: " + cmd);
      }
      assertFalse(cmd.contains("_netdev"), cmd);
    }
  }

  @Test
  @DisplayName("status --watch prints a fresh table once a second")
  void statusWatch() throws Exception {
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing, mnt)) {
      w.mount();
      List<String> cmd = new ArrayList<>(List.of(
          Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
          System.getProperty("java.class.path"), Main.class.getName(), "status", "--watch",
          mnt.toString()));
      Path outFile = tmp.resolve("watch.out");
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
          .redirectOutput(outFile.toFile()).start();
      Thread.sleep(4500);
      p.destroy();
      assertTrue(p.waitFor(30, TimeUnit.SECONDS));
      String out = Files.readString(outFile);
      Matcher m = Pattern.compile("wcfs status \\S+ at (\\d\\d:\\d\\d:\\d\\d)").matcher(out);
      List<String> times = new ArrayList<>();
      while (m.find()) {
        times.add(m.group(1));
      }
      assertTrue(times.size() >= 2, "refreshes: " + times + "\n" + out);
      assertEquals(times.size(), times.stream().distinct().count(), "one per second: " + times);
      assertEquals(times.size(), out.lines().filter(l -> l.startsWith("free_blocks")).count(),
          out);
    }
  }
}
