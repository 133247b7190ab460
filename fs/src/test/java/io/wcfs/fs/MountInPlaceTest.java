package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code wcfs mount CACHE /data /data}: the mount point is the backing directory, as
 * dm-writecache sits over its origin. The daemon opens the backing root before it mounts over
 * it and reaches everything below through that descriptor.
 */
@Timeout(600)
class MountInPlaceTest {
  @TempDir Path tmp;
  Path cacheDir;
  Path data;

  @BeforeEach
  void setUp() throws Exception {
    cacheDir = WcfsProcess.tmpfsCacheDir("inplace");
    data = Files.createDirectories(tmp.resolve("data"));
    Files.writeString(data.resolve("existing"), "was here before the mount");
    Files.createDirectories(data.resolve("sub"));
    Files.writeString(data.resolve("sub/deep"), "deep");
  }

  @AfterEach
  void tearDown() throws Exception {
    // Whatever a failed test left: every wcfs mount over data, then the cache.
    for (int i = 0; i < 5 && Mounts.isWcfs(data); i++) {
      new ProcessBuilder("fusermount", "-u", "-z", data.toString()).start()
          .waitFor(30, TimeUnit.SECONDS);
    }
    WcfsProcess.deleteTree(cacheDir);
  }

  private static void writeSynced(Path f, byte[] bytes) throws Exception {
    try (FileChannel c = FileChannel.open(f, StandardOpenOption.CREATE,
        StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
      c.write(ByteBuffer.wrap(bytes));
      c.force(true);
    }
  }

  @Test
  @DisplayName("mount in place over a non-empty directory: old files shown, new ones cached,"
      + " all of it in the directory after unmount")
  void inPlace() throws Exception {
    byte[] big = new byte[3 << 20];
    new Random(1).nextBytes(big);
    try (WcfsProcess w = new WcfsProcess(cacheDir, data, data)) {
      w.mount("--max-age", "0", "--high-watermark", "100", "--low-watermark", "100");
      assertTrue(Mounts.isWcfs(data.toRealPath()), "mounted over itself");
      assertEquals("was here before the mount", Files.readString(data.resolve("existing")));
      assertEquals("deep", Files.readString(data.resolve("sub/deep")));
      writeSynced(data.resolve("new"), big);
      Files.writeString(data.resolve("existing"), " and more", StandardOpenOption.APPEND);
      Files.createDirectories(data.resolve("dir2"));
      Files.move(data.resolve("sub/deep"), data.resolve("dir2/moved"));
      assertTrue(w.statusNumber("dirty_blocks") > 0, "the new data is only in the cache");
      WcfsProcess.Result st = WcfsProcess.run(30, "status", data.toString());
      assertTrue(st.out().contains("backing") && st.out().contains(data.toRealPath()
          .toString()), st.all());
      w.umount();
    }
    assertFalse(Mounts.isWcfs(data.toRealPath()));
    assertArrayEquals(big, Files.readAllBytes(data.resolve("new")));
    assertEquals("was here before the mount and more",
        Files.readString(data.resolve("existing")));
    assertEquals("deep", Files.readString(data.resolve("dir2/moved")));
    assertFalse(Files.exists(data.resolve("sub/deep")));
    WcfsProcess.Result check = WcfsProcess.run(60, "check", cacheDir.toString());
    assertTrue(check.out().contains("committed blocks   0"), check.all());
  }

  @Test
  @DisplayName("mount in place over a directory that is itself a mount point (a filesystem"
      + " of its own, as /data usually is)")
  void overAMountPoint() throws Exception {
    assertEquals(0, sh("mount", "-t", "tmpfs", "-o", "size=64m", "wcfs-inplace", data.toString()));
    try {
      Files.writeString(data.resolve("on-tmpfs"), "origin");
      try (WcfsProcess w = new WcfsProcess(cacheDir, data, data)) {
        w.mount();
        assertEquals("origin", Files.readString(data.resolve("on-tmpfs")));
        writeSynced(data.resolve("f"), "through wcfs".getBytes());
        w.umount();
      }
      assertEquals("tmpfs", Mounts.typeAt(data.toRealPath()));
      assertEquals("through wcfs", Files.readString(data.resolve("f")));
    } finally {
      sh("umount", "-l", data.toString());
    }
  }

  /** The daemon's descriptor of the backing root: the directory underneath the mount. */
  private static Path underneath(long pid, Path dir) throws Exception {
    try (Stream<Path> fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
      for (Path fd : fds.toList()) {
        try {
          if (Files.readSymbolicLink(fd).equals(dir.toRealPath()) && Files.isDirectory(fd)) {
            return fd;
          }
        } catch (java.io.IOException e) {
          // closed meanwhile
        }
      }
    }
    throw new AssertionError("the daemon holds no descriptor of " + dir);
  }

  @Test
  @DisplayName("in place, a file deleted underneath the mount: its data goes to lost+found"
      + " in the backing directory, not through the mount")
  void lostAndFoundInPlace() throws Exception {
    // A file of the directory (one created through the mount reaches it only when writeback
    // applies its record), written through the mount without O_TRUNC (a truncate would open
    // the backing file, and an open file is written through its descriptor whatever its name).
    Files.createFile(data.resolve("victim"));
    try (WcfsProcess w = new WcfsProcess(cacheDir, data, data)) {
      w.mount("--high-watermark", "100", "--low-watermark", "100");
      try (FileChannel c = FileChannel.open(data.resolve("victim"), StandardOpenOption.WRITE)) {
        c.write(ByteBuffer.wrap(new byte[8192]));
        c.force(true);
      }
      Path under = underneath(w.daemonPid(), data);
      Files.delete(under.resolve("victim")); // behind wcfs's back, below its own mount
      WcfsProcess.Result flush = WcfsProcess.run(60, "flush", data.toString());
      assertEquals(0, flush.exitCode(), flush.all() + w.log());
      assertEquals(1, w.statusNumber("lost_and_found_files"));
      assertTrue(Files.isDirectory(under.resolve(".wcfs-lost+found")));
      w.umount();
    }
    try (Stream<Path> s = Files.list(data.resolve(".wcfs-lost+found"))) {
      Path f = s.findFirst().orElseThrow();
      assertTrue(f.getFileName().toString().startsWith("victim.slot"), f.toString());
      assertArrayEquals(new byte[8192], Files.readAllBytes(f));
    }
  }

  @DisplayName("kill -9 leaves a dead mount; the next mount clears it and recovers every"
      + " fsync'd byte")
  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"in place", "separate mount point"})
  void killAndMountAgain(String how) throws Exception {
    Path mnt = how.equals("in place") ? data : Files.createDirectories(tmp.resolve("m"));
    byte[] bytes = new byte[1 << 20];
    new Random(2).nextBytes(bytes);
    try (WcfsProcess w = new WcfsProcess(cacheDir, data, mnt)) {
      w.mount("--max-age", "0", "--high-watermark", "100", "--low-watermark", "100");
      writeSynced(mnt.resolve("acked"), bytes);
      long pid = w.daemonPid();
      ProcessHandle h = ProcessHandle.of(pid).orElseThrow();
      assertEquals(0, sh("kill", "-9", Long.toString(pid)));
      h.onExit().get(60, TimeUnit.SECONDS);
      w.markUnmounted();
      assertTrue(Mounts.isWcfs(mnt.toAbsolutePath()), "a dead mount is left behind");
      w.mount(); // no fusermount -u first: wcfs clears its own dead mount
      assertArrayEquals(bytes, Files.readAllBytes(mnt.resolve("acked")));
      w.umount();
    } finally {
      if (!mnt.equals(data) && Mounts.isWcfs(mnt.toAbsolutePath())) {
        sh("fusermount", "-u", "-z", mnt.toString());
      }
    }
    assertArrayEquals(bytes, Files.readAllBytes(data.resolve("acked")));
  }

  private static int sh(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd));
    return p.exitValue();
  }
}
