package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** A backing filesystem that fills up, and a cache file corrupted while unmounted. */
@Timeout(300)
class FaultsTest {
  @TempDir Path tmp;
  Path cacheDir;

  @BeforeEach
  void setUp() throws Exception {
    cacheDir = WcfsProcess.tmpfsCacheDir("faults");
  }

  @AfterEach
  void tearDown() throws Exception {
    WcfsProcess.deleteTree(cacheDir);
  }


  private static void sh(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0,
        String.join(" ", cmd) + ": " + out);
  }

  @Test
  @DisplayName("backing filesystem full: writes succeed into the cache, writeback retries,"
      + " drains once space is freed, nothing lost")
  void backingFillsUp() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("small"));
    sh("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", backing.toString());
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing,
        Files.createDirectories(tmp.resolve("m")))) {
      Files.write(backing.resolve("filler"), new byte[3 << 20]); // leaves ~1 MiB free
      w.mount("--cache-size", "32M", "--cleaner");
      byte[] data = new byte[3 << 20];
      new Random(5).nextBytes(data);
      Files.write(w.mountpoint.resolve("big"), data); // fits the cache, not the disk
      try (RandomAccessFile f = new RandomAccessFile(w.mountpoint.resolve("big").toFile(),
          "rw")) {
        f.getFD().sync();
      }
      long deadline = System.currentTimeMillis() + 20_000;
      while (w.statusNumber("writeback_errors") == 0 && System.currentTimeMillis() < deadline) {
        Thread.sleep(200);
      }
      assertTrue(w.statusNumber("writeback_errors") > 0, "ENOSPC counted in status");
      assertTrue(w.statusNumber("dirty_blocks") > 0, "data kept in the cache");
      assertArrayEquals(data, Files.readAllBytes(w.mountpoint.resolve("big")), "still readable");
      Files.delete(backing.resolve("filler")); // space comes back
      WcfsProcess.Result flush = WcfsProcess.run(120, "flush", w.mountpoint.toString());
      assertEquals(0, flush.exitCode(), flush.all());
      assertEquals(0, w.statusNumber("dirty_blocks"));
      w.umount();
      assertArrayEquals(data, Files.readAllBytes(backing.resolve("big")), "backing after drain");
    } finally {
      sh("umount", "-l", backing.toString());
    }
  }

  @Test
  @DisplayName("a full cache over a stuck backing store: writers wait, visibly in status")
  void fullCacheWritersWaitVisibly() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("tiny"));
    sh("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", backing.toString());
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing,
        Files.createDirectories(tmp.resolve("m")))) {
      Files.write(backing.resolve("filler"), new byte[1000 * 1024]); // the disk is full
      w.mount("--cache-size", "2M");
      byte[] data = new byte[6 << 20]; // three times the cache
      new Random(8).nextBytes(data);
      Thread writer = new Thread(() -> {
        try {
          Files.write(w.mountpoint.resolve("big"), data);
        } catch (java.io.IOException e) {
          throw new RuntimeException(e);
        }
      });
      writer.start();
      long deadline = System.currentTimeMillis() + 30_000;
      while (w.statusNumber("writers_waiting_now") == 0
          && System.currentTimeMillis() < deadline) {
        Thread.sleep(100);
      }
      assertTrue(w.statusNumber("writers_waiting_now") > 0, "status shows a waiting writer");
      assertTrue(w.statusNumber("writes_blocked_on_freelist") > 0);
      assertTrue(w.statusNumber("writeback_errors") > 0);
      assertTrue(writer.isAlive(), "the writer waits instead of failing");
      sh("mount", "-o", "remount,size=16m", backing.toString()); // the disk gets room
      writer.join(120_000);
      assertTrue(!writer.isAlive());
      w.umount();
      assertArrayEquals(data, Files.readAllBytes(backing.resolve("big")));
    } finally {
      sh("umount", "-l", backing.toString());
    }
  }

  @Test
  @DisplayName("a backing file deleted behind wcfs's back: no crash, a log line naming it,"
      + " its data in lost+found")
  void backingFileDeletedBehindOurBack() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("b"));
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing,
        Files.createDirectories(tmp.resolve("m")))) {
      // Files that exist in the backing directory (a file created through the mount reaches it
      // only when writeback applies its record).
      Files.createFile(backing.resolve("victim"));
      Files.createFile(backing.resolve("gone"));
      w.mount("--cache-size", "16M", "--high-watermark", "100", "--low-watermark", "100");
      // Written without O_TRUNC: a truncate would open the backing file, and an open file is
      // written through its descriptor whatever happens to its name.
      writeSyncedNoTrunc(w.mountpoint.resolve("victim"), "cached data".getBytes());
      writeSyncedNoTrunc(w.mountpoint.resolve("gone"), new byte[8192]); // whole blocks
      Files.delete(backing.resolve("victim")); // behind wcfs's back
      Files.delete(backing.resolve("gone"));
      WcfsProcess.Result flush = WcfsProcess.run(60, "flush", w.mountpoint.toString());
      assertEquals(0, flush.exitCode(), flush.all());
      Files.writeString(w.mountpoint.resolve("after"), "still working");
      assertEquals("still working", Files.readString(w.mountpoint.resolve("after")));
      assertTrue(w.log().contains("victim was deleted in the backing directory behind"),
          w.log());
      // Until 2026-11-30 these blocks were dropped ("dropping its 2 cached blocks"); fsync'd
      // data now goes to lost+found instead, named in the log (DESIGN.md, "Identity").
      assertTrue(w.log().contains("gone was deleted in the backing directory behind wcfs's"
          + " back; its 2 cached blocks (size 8192) go to .wcfs-lost+found/gone."), w.log());
      assertEquals("cached data", Files.readString(backing.resolve(
          ".wcfs-lost+found/victim.slot0-seq1")), "the fsync'd data, kept where it can be found");
      assertEquals(2, w.statusNumber("lost_and_found_files"));
    }
  }

  private static void writeSyncedNoTrunc(Path p, byte[] data) throws java.io.IOException {
    try (java.nio.channels.FileChannel c = java.nio.channels.FileChannel.open(p,
        java.nio.file.StandardOpenOption.WRITE)) {
      c.write(java.nio.ByteBuffer.wrap(data));
      c.force(true);
    }
  }

  @Test
  @DisplayName("a cache corrupted while unmounted is refused precisely; check says why;"
      + " backing untouched")
  void corruptedCacheRefused() throws Exception {
    Path backing = Files.createDirectories(tmp.resolve("b"));
    Path mnt = Files.createDirectories(tmp.resolve("m"));
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing, mnt)) {
      w.mount("--cache-size", "16M", "--high-watermark", "100", "--low-watermark", "100");
      Files.writeString(mnt.resolve("f"), "cached");
      try (RandomAccessFile f = new RandomAccessFile(mnt.resolve("f").toFile(), "rw")) {
        f.getFD().sync();
      }
      w.kill9(); // committed data stays in the cache only
    }
    Files.writeString(backing.resolve("f"), "backing version");
    Path cache = cacheDir.resolve("wcfs.cache");
    byte[] good = Files.readAllBytes(cache);
    java.nio.ByteBuffer sb = java.nio.ByteBuffer.wrap(good).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    int fileTable = (int) sb.getLong(40);
    int entries = (int) sb.getLong(48);
    int usedEntry = entries;
    while (sb.getLong(usedEntry + 8) == -1) {
      usedEntry += 16;
    }
    int usedVersion = fileTable;
    while (sb.getLong(usedVersion) == -1) {
      usedVersion += 256;
    }
    // Each corruption alone: superblock field, entry location, file-table path length.
    String[][] cases = {{"16", "0x7f", "checksum"},
        {Integer.toString(usedEntry + 5), "0x70", "names file slot"},
        {Integer.toString(usedVersion + 33), "0x7f", "invalid path length"}};
    for (String[] c : cases) {
      byte[] bad = good.clone();
      bad[Integer.parseInt(c[0])] = (byte) Integer.decode(c[1]).intValue();
      Files.write(cache, bad);
      WcfsProcess.Result r = WcfsProcess.run(60, "mount", cacheDir.toString(),
          backing.toString(), mnt.toString());
      assertNotEquals(0, r.exitCode(), c[2] + ": " + r.all());
      assertTrue(r.err().contains(c[2]), c[2] + ": " + r.all());
      WcfsProcess.Result check = WcfsProcess.run(60, "check", cacheDir.toString());
      assertNotEquals(0, check.exitCode(), c[2] + ": " + check.all());
      assertTrue(check.out().contains(c[2]), c[2] + ": " + check.all());
      assertEquals("backing version", Files.readString(backing.resolve("f")));
      assertTrue(!Mounts.isWcfs(mnt.toRealPath()));
      assertArrayEquals(bad, Files.readAllBytes(cache), "a refused cache is left as it was");
    }
  }
}
