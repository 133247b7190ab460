package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * fallocate's punch hole ({@code FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE}) and zero range
 * ({@code FALLOC_FL_ZERO_RANGE}, with and without KEEP_SIZE) through the mount, next to the same
 * calls on a plain directory: the same bytes and sizes, also after kill -9 (the backing file
 * still holds the old bytes of the ranges: they must not come back), and in the backing
 * directory after unmount, with the punched blocks deallocated there.
 */
@Timeout(600)
class PunchHoleTest extends OwnMountTest {
  private static final int SIZE = 2 << 20;

  /** util-linux fallocate on a file; returns what a failure printed, "" on success. */
  private static String fallocate(Path f, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("fallocate"));
    cmd.addAll(List.of(args));
    cmd.add(f.toString());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(60, TimeUnit.SECONDS));
    return p.exitValue() == 0 ? "" : out.replace(f.toString(), "FILE").trim();
  }

  private static void fsync(Path f) throws Exception {
    try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
      r.getFD().sync();
    }
  }

  private static void writeAt(Path f, long offset, byte[] data) throws Exception {
    try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
      r.seek(offset);
      r.write(data);
    }
  }

  /** 512-byte sectors allocated to a file (st_blocks). */
  private static long allocated(Path f) throws Exception {
    Process p = new ProcessBuilder("stat", "-c", "%b", f.toString()).start();
    String out = new String(p.getInputStream().readAllBytes()).trim();
    assertTrue(p.waitFor(30, TimeUnit.SECONDS));
    return Long.parseLong(out) * 512;
  }

  /** The same calls on the mount's file and on the reference; their outcomes must match. */
  private static void both(Path mine, Path ref, String... args) throws Exception {
    assertEquals(fallocate(ref, args), fallocate(mine, args), "fallocate " + String.join(" ",
        args));
  }

  @Test
  @DisplayName("punch hole and zero range read as on a plain directory, survive kill -9 over a"
      + " backing file that still holds the old bytes, and reach the backing directory")
  void sameAsPlainDirectoryAndCrashSafe() throws Exception {
    byte[] data = new byte[SIZE];
    new Random(19).nextBytes(data);
    Path ref = Files.createDirectories(tmp.resolve("reference")).resolve("f");
    Files.write(ref, data);
    wcfs.mount("--max-age", "0", "--high-watermark", "100", "--low-watermark", "100");
    Path f = wcfs.mountpoint.resolve("f");
    Files.write(f, data);
    fsync(f);
    assertEquals(0, WcfsProcess.run(60, "flush", wcfs.mountpoint.toString()).exitCode());
    assertArrayEquals(data, Files.readAllBytes(wcfs.backing.resolve("f")), "old bytes on disk");
    writeAt(f, 10_000, "cached, not yet written back".getBytes());
    writeAt(ref, 10_000, "cached, not yet written back".getBytes());
    fsync(f);
    // short punch (partial blocks and whole ones, over cached and written-back data)
    both(f, ref, "--punch-hole", "--offset", "5000", "--length", "30000");
    // long punch (hundreds of blocks), then a write into it
    both(f, ref, "--punch-hole", "--offset", "300000", "--length", "700000");
    writeAt(f, 400_000, "written after the punch".getBytes());
    writeAt(ref, 400_000, "written after the punch".getBytes());
    // zero range, keeping the size, short and long
    both(f, ref, "--zero-range", "--keep-size", "--offset", "1200000", "--length", "10000");
    both(f, ref, "--zero-range", "--keep-size", "--offset", "1300000", "--length", "600000");
    // punch and zero past the end: the size stays
    both(f, ref, "--punch-hole", "--offset", String.valueOf(SIZE - 3000), "--length", "90000");
    // preallocation keeping the size (RocksDB's), inside and past the end: nothing changes
    both(f, ref, "--keep-size", "--offset", "100000", "--length", "50000");
    both(f, ref, "--keep-size", "--offset", String.valueOf(SIZE - 2000), "--length", "1000000");
    // zero range past the end without KEEP_SIZE: the file grows
    both(f, ref, "--zero-range", "--offset", String.valueOf(SIZE - 1000), "--length", "9000");
    byte[] expected = Files.readAllBytes(ref);
    assertEquals(SIZE + 8000, expected.length);
    assertArrayEquals(expected, Files.readAllBytes(f), "through the mount");
    fsync(f);
    wcfs.kill9();
    wcfs.mount("--max-age", "0", "--high-watermark", "100", "--low-watermark", "100");
    assertArrayEquals(expected, Files.readAllBytes(f), "after kill -9 and recovery");
    wcfs.umount();
    assertArrayEquals(expected, Files.readAllBytes(wcfs.backing.resolve("f")),
        "the backing file after unmount");
    // The long punch was made in the backing file itself: ~680 KiB fewer allocated there.
    assertTrue(allocated(wcfs.backing.resolve("f")) <= expected.length - 600_000,
        "allocated in the backing file: " + allocated(wcfs.backing.resolve("f")));
  }

  @Test
  @DisplayName("a short punch is applied to the backing file at writeback: its blocks are"
      + " deallocated there too, not written as zeros")
  void shortPunchDeallocatedAtWriteback() throws Exception {
    byte[] data = new byte[1 << 20];
    new Random(20).nextBytes(data);
    wcfs.mount("--max-age", "0", "--high-watermark", "100", "--low-watermark", "100");
    Path f = wcfs.mountpoint.resolve("g");
    Files.write(f, data);
    fsync(f);
    assertEquals(0, WcfsProcess.run(60, "flush", wcfs.mountpoint.toString()).exitCode());
    long before = allocated(wcfs.backing.resolve("g"));
    assertEquals("", fallocate(f, "--punch-hole", "--offset", "65536", "--length", "131072"));
    fsync(f);
    assertEquals(0, WcfsProcess.run(60, "flush", wcfs.mountpoint.toString()).exitCode());
    byte[] expected = data.clone();
    java.util.Arrays.fill(expected, 65536, 65536 + 131072, (byte) 0);
    assertArrayEquals(expected, Files.readAllBytes(wcfs.backing.resolve("g")));
    long after = allocated(wcfs.backing.resolve("g"));
    assertTrue(after <= before - 131072, "allocated before " + before + ", after " + after);
    wcfs.umount();
  }
}
