package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The command line on a cache an older wcfs wrote (format version 1): check says what it holds
 * and that the next mount converts it, format without --force keeps its data, writeback writes
 * it back and converts it, and another directory's cache is refused unchanged.
 */
@Timeout(300)
class VersionOneCacheTest {
  private static final int BS = 4096;
  private static final int N_BLOCKS = 1024;
  @TempDir Path tmp;
  Path cacheDir;
  Path cacheFile;
  Path backing;

  @BeforeEach
  void setUp() throws Exception {
    cacheDir = WcfsProcess.tmpfsCacheDir("v1");
    cacheFile = cacheDir.resolve("wcfs.cache");
    backing = Files.createDirectories(tmp.resolve("backing")).toRealPath();
    Files.write(backing.resolve("a"), fill(2 * BS, 'x'));
  }

  @AfterEach
  void tearDown() throws Exception {
    WcfsProcess.deleteTree(cacheDir);
  }

  private static byte[] fill(int n, int c) {
    byte[] b = new byte[n];
    Arrays.fill(b, (byte) c);
    return b;
  }

  private static long align(long v, long a) {
    return (v + a - 1) / a * a;
  }

  /**
   * A version 1 cache, by hand from version 1's layout: file "a" recorded at size BS + 5 with
   * block 1 cached ('y'), seq_count 2.
   */
  private byte[] versionOneImage(Path dir) throws Exception {
    int fileSlots = Math.max(64, N_BLOCKS / 8);
    long fileTable = 4096;
    long entries = align(fileTable + (long) fileSlots * 2 * 256, 4096);
    long data = align(entries + (long) N_BLOCKS * 16, 4096);
    ByteBuffer b = ByteBuffer.allocate((int) (data + (long) N_BLOCKS * BS))
        .order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < fileSlots * 2; i++) {
      b.putLong((int) fileTable + i * 256, -1); // free
    }
    for (int i = 0; i < N_BLOCKS; i++) {
      b.putLong((int) entries + i * 16 + 8, -1); // free
    }
    byte[] root = dir.toString().getBytes(StandardCharsets.UTF_8);
    b.putLong(0, 0x4843414353464357L);
    b.putLong(8, 1L << 32 | BS);
    b.putLong(16, N_BLOCKS);
    b.putLong(24, 2); // seq_count
    b.putLong(32, (long) fileSlots << 32 | 256);
    b.putLong(40, fileTable);
    b.putLong(48, entries);
    b.putLong(56, data);
    b.putLong(64, (Long) Files.getAttribute(dir, "unix:ino"));
    b.putLong(72, root.length);
    b.put(80, root);
    CRC32C crc = new CRC32C();
    for (int off = 0; off < 4088; off += 8) {
      if (off != 24) { // seq_count is not covered
        crc.update(b.array(), off, 8);
      }
    }
    b.putLong(4088, crc.getValue());
    Path a = backing.resolve("a");
    long ino = (Long) Files.getAttribute(a, "unix:ino");
    int fv = (int) fileTable; // slot 0, version 0
    b.putLong(fv, 1); // seq
    b.putLong(fv + 8, ino);
    b.putLong(fv + 16, BS + 5); // size
    b.putLong(fv + 24, 1_600_000_000_000_000_000L); // mtime
    b.putLong(fv + 32, 1); // path length, no dev hint
    b.put(fv + 40, (byte) 'a');
    b.putLong((int) entries + 3 * 16, 1L << 40 | 1); // cache slot 3: file slot 0, block 1
    b.putLong((int) entries + 3 * 16 + 8, 1);
    b.put((int) data + 3 * BS, fill(BS, 'y'));
    return b.array();
  }

  @Test
  @DisplayName("check, format, writeback of a version 1 cache")
  void versionOneCacheThroughTheCommandLine() throws Exception {
    byte[] image = versionOneImage(backing);
    Files.write(cacheFile, image);

    WcfsProcess.Result check = WcfsProcess.run(60, "check", cacheDir.toString());
    assertEquals(0, check.exitCode(), check.all());
    assertTrue(check.out().contains("format version 1"), check.all());
    assertTrue(check.out().contains("writes these 1 committed blocks back"), check.all());

    WcfsProcess.Result format = WcfsProcess.run(60, "format", cacheDir.toString(),
        backing.toString());
    assertNotEquals(0, format.exitCode(), format.all());
    assertTrue(format.all().contains("holds 1 blocks and 0 namespace records not yet written back"), format.all());
    assertArrayEquals(image, Files.readAllBytes(cacheFile), "format refused: cache unchanged");

    Path other = Files.createDirectories(tmp.resolve("other")).toRealPath();
    WcfsProcess.Result wrong = WcfsProcess.run(60, "writeback", cacheDir.toString(),
        other.toString());
    assertNotEquals(0, wrong.exitCode(), wrong.all());
    assertTrue(wrong.all().contains("format version 1 for backing directory " + backing),
        wrong.all());
    assertArrayEquals(image, Files.readAllBytes(cacheFile), "refused: cache unchanged");

    WcfsProcess.Result wb = WcfsProcess.run(60, "writeback", cacheDir.toString(),
        backing.toString());
    assertEquals(0, wb.exitCode(), wb.all());
    assertTrue(wb.out().contains("wrote 1 blocks back") && wb.out().contains("format version 1"),
        wb.all());
    byte[] want = new byte[BS + 5];
    System.arraycopy(fill(BS, 'x'), 0, want, 0, BS);
    System.arraycopy(fill(5, 'y'), 0, want, BS, 5);
    assertArrayEquals(want, Files.readAllBytes(backing.resolve("a")));

    WcfsProcess.Result after = WcfsProcess.run(60, "check", cacheDir.toString());
    assertEquals(0, after.exitCode(), after.all());
    assertTrue(after.out().contains("format version " + io.wcfs.core.CacheLayout.VERSION)
        && after.out().contains("committed blocks   0"), after.all());
  }
}
