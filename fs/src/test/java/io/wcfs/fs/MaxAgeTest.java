package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The backing directory never lags without bound: below the high watermark, blocks older than
 * {@code max_age} (default 30 s, the kernel's own dirty expiry) are written back anyway.
 */
@Timeout(300)
class MaxAgeTest extends OwnMountTest {

  @Test
  @DisplayName("max_age defaults to 30 s and status shows it; --max-age 0 turns it off")
  void defaultShownInStatus() throws Exception {
    wcfs.mount();
    assertEquals(30_000, wcfs.statusNumber("max_age_ms"));
    WcfsProcess.Result table = WcfsProcess.run(30, "status", wcfs.mountpoint.toString());
    assertTrue(table.out().matches("(?s).*max_age_ms\\s+30000\\R.*"), table.all());
    wcfs.umount();
    wcfs.mount("--max-age", "0");
    assertEquals(0, wcfs.statusNumber("max_age_ms"));
  }

  @Test
  @DisplayName("an idle mount far below the watermark writes fsync'd data back within max_age,"
      + " without flush or unmount")
  void idleMountCatchesUp() throws Exception {
    wcfs.mount(); // 64 MiB cache: 256 KiB is far below the 50 % high watermark
    byte[] data = new byte[256 << 10];
    new Random(30).nextBytes(data);
    Path f = wcfs.mountpoint.resolve("idle");
    try (FileChannel c = FileChannel.open(f, StandardOpenOption.CREATE,
        StandardOpenOption.WRITE)) {
      c.write(ByteBuffer.wrap(data));
      c.force(true);
    }
    long start = System.nanoTime();
    Path back = wcfs.backing.resolve("idle");
    while (System.nanoTime() - start < 50_000_000_000L) {
      if (Files.exists(back) && Arrays.equals(data, Files.readAllBytes(back))) {
        break;
      }
      Thread.sleep(500);
    }
    long tookMs = (System.nanoTime() - start) / 1_000_000;
    assertArrayEquals(data, Files.readAllBytes(back),
        "the backing file still lacks fsync'd data after " + tookMs + " ms");
    assertTrue(tookMs > 20_000, "written back after " + tookMs + " ms: too early for a 30 s"
        + " max_age far below the watermark");
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (wcfs.statusNumber("dirty_blocks") != 0 && System.nanoTime() < deadline) {
      Thread.sleep(200);
    }
    assertEquals(0, wcfs.statusNumber("dirty_blocks"));
  }
}
