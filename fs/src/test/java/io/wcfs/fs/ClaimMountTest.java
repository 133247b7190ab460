package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The claim of the backing directory through real mounts on this machine. */
@Timeout(300)
class ClaimMountTest {
  @TempDir Path tmp;

  private WcfsProcess wcfs(String name, Path backing) throws IOException {
    return new WcfsProcess(WcfsProcess.tmpfsCacheDir("Claim" + name), backing,
        Files.createDirectories(tmp.resolve("m" + name)));
  }

  @Test
  @DisplayName("a second mount of a claimed directory on this machine is refused naming the"
      + " first; the claim is hidden in the mount and cannot be touched through it")
  void secondMountRefused() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("b"));
    try (WcfsProcess a = wcfs("A", backing).mount(); WcfsProcess b = wcfs("B", backing)) {
      try {
        assertTrue(Files.isRegularFile(backing.resolve(".wcfs/claim")));
        assertFalse(Files.exists(a.mountpoint.resolve(".wcfs")), "the mount shows .wcfs");
        try (Stream<Path> s = Files.list(a.mountpoint)) {
          assertTrue(s.noneMatch(p -> p.getFileName().toString().equals(".wcfs")));
        }
        assertThrows(IOException.class,
            () -> Files.createDirectory(a.mountpoint.resolve(".wcfs")));
        WcfsProcess.Result st = WcfsProcess.run(30, "status", a.mountpoint.toString());
        assertTrue(st.out().contains("generation 1"), st.all());

        WcfsProcess.Result r = WcfsProcess.run(60, "mount", "--cache-size", "64M",
            b.cacheDir.toString(), backing.toString(), b.mountpoint.toString());
        assertEquals(2, r.exitCode(), "a second cache over the same directory was accepted: "
            + r.all());
        assertTrue(r.err().contains("is claimed by the wcfs mount at "
            + a.mountpoint.toRealPath()), r.err());
        a.umount();
        b.mount(); // released: welcome
        b.umount();
      } finally {
        WcfsProcess.deleteTree(a.cacheDir);
        WcfsProcess.deleteTree(b.cacheDir);
      }
    }
  }

  @Test
  @DisplayName("a mount whose claim another cache took stops writing back: flush says so,"
      + " umount does not wait, the data stays in its cache")
  void lostClaimStopsWriteback() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("b"));
    byte[] data = new byte[100_000];
    new Random(1).nextBytes(data);
    // A renews every 10 s: B claims the directory in between (sooner, A makes the file again).
    try (WcfsProcess a = wcfs("LostA", backing).mount("--lease", "40000",
        "--max-age", "0");
        WcfsProcess b = wcfs("LostB", backing)) {
      try {
        try (FileChannel c = FileChannel.open(a.mountpoint.resolve("x"),
            StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
          c.write(ByteBuffer.wrap(data));
          c.force(true);
        }
        // Someone removes the claim behind A's back, and another cache claims the directory:
        // A finds another holder in the record at its next renewal.
        Files.delete(backing.resolve(".wcfs/claim"));
        b.mount();
        long deadline = System.nanoTime() + 30_000_000_000L;
        String status = "";
        while (System.nanoTime() < deadline && !status.contains("LOST")) {
          Thread.sleep(200);
          status = WcfsProcess.run(30, "status", a.mountpoint.toString()).out();
        }
        assertTrue(status.contains("LOST: this cache lost its claim"), status + a.log());

        WcfsProcess.Result f = WcfsProcess.run(60, "flush", a.mountpoint.toString());
        assertEquals(1, f.exitCode(), f.all());
        assertTrue(f.err().contains("taken over by the wcfs mount at "
            + b.mountpoint.toRealPath()), f.err());
        assertFalse(Files.exists(backing.resolve("x"))
            && Arrays.equals(data, Files.readAllBytes(backing.resolve("x"))),
            "the mount that lost its claim wrote back");

        WcfsProcess.Result u = WcfsProcess.run(120, "umount", a.mountpoint.toString());
        assertEquals(0, u.exitCode(), u.all() + a.log());
        assertTrue(u.err().contains("unmounting without writing back"), u.all());
        a.markUnmounted();
        assertTrue(CacheSetup.holdsData(a.cacheDir.resolve("wcfs.cache")),
            "the data stays in the cache");
        b.umount();
      } finally {
        WcfsProcess.deleteTree(a.cacheDir);
        WcfsProcess.deleteTree(b.cacheDir);
      }
    }
  }
}
