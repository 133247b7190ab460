package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * FUSE round trips wcfs saves the kernel, each with the behaviour it must keep: every request
 * costs more than the engine's work for it, so requests with nothing to do are not asked for.
 */
@Timeout(120)
class RoundTripsTest extends OwnMountTest {

  @Test
  void closeSendsNoFlush() throws Exception {
    Assumptions.assumeFalse("uring".equals(System.getProperty("wcfs.fuseTransport")),
        "over io_uring FLUSH stays answered: ordering a RELEASE before the next unlink needs it");
    wcfs.mount();
    Path f = wcfs.mountpoint.resolve("f");
    byte[] data = new byte[5000];
    for (int i = 0; i < 50; i++) {
      data[i] = (byte) (i + 1);
      Files.write(f, data); // open, write, close
    }
    long flushes = requests("fuse_flush");
    assertTrue(flushes <= 1, "FLUSH requests for 50 closes: " + flushes
        + " (the first one's ENOSYS should have stopped them)");
    assertArrayEquals(data, Files.readAllBytes(f));
    wcfs.umount();
    assertArrayEquals(data, Files.readAllBytes(wcfs.backing.resolve("f")),
        "closed without FLUSH, the data still reaches the backing directory");
  }

  @Test
  void missingNamesAreRememberedUntilCreated() throws Exception {
    wcfs.mount();
    Path j = wcfs.mountpoint.resolve("db-journal");
    assertFalse(Files.exists(j));
    long before = requests("fuse_lookup");
    for (int i = 0; i < 20; i++) {
      assertFalse(Files.exists(j));
    }
    long lookups = requests("fuse_lookup") - before;
    assertTrue(lookups <= 2, "LOOKUPs for 20 checks of a missing name: " + lookups);
    // A remembered "no such name" must not hide what the mount itself creates, renames or
    // removes.
    Files.writeString(j, "x");
    assertTrue(Files.exists(j));
    Files.delete(j);
    assertFalse(Files.exists(j));
    Path t = wcfs.mountpoint.resolve("t");
    assertFalse(Files.exists(t));
    Files.writeString(t, "y");
    Files.move(t, j);
    assertTrue(Files.exists(j));
    assertFalse(Files.exists(t));
  }

  /**
   * Writes, fsyncs and reads of an open file are answered without libfuse2's high-level layer
   * (DataRequests), except a file's first write, which learns that it has no file capability
   * to remove, and they do what the general path does.
   */
  @Test
  void dataRequestsAreAnsweredDirectly() throws Exception {
    byte[] old = new byte[256 * 1024];
    new java.util.Random(7).nextBytes(old);
    Files.write(wcfs.backing.resolve("old"), old); // read cold through the mount
    wcfs.mount();
    String status = WcfsProcess.run(30, "status", "--json", wcfs.mountpoint.toString()).out();
    Assumptions.assumeTrue(status.contains("\"fuse_transport\": \"/dev/fuse\""),
        "over io_uring every request goes through libfuse2");
    long before = requests("fuse_requests_direct");
    byte[] expect = new byte[64 * 4096];
    try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(
        wcfs.mountpoint.resolve("f"), java.nio.file.StandardOpenOption.CREATE,
        java.nio.file.StandardOpenOption.WRITE)) {
      for (int i = 0; i < 64; i++) {
        byte[] b = new byte[4096];
        java.util.Arrays.fill(b, (byte) (i + 1));
        int block = (i * 37) % 64;
        System.arraycopy(b, 0, expect, block * 4096, 4096);
        ch.write(java.nio.ByteBuffer.wrap(b), block * 4096L);
        if (i % 8 == 7) {
          ch.force(false);
        }
      }
    }
    try (java.nio.channels.FileChannel dir = java.nio.channels.FileChannel.open(
        wcfs.mountpoint)) {
      dir.force(true); // FSYNCDIR
    }
    assertArrayEquals(old, Files.readAllBytes(wcfs.mountpoint.resolve("old")));
    long direct = requests("fuse_requests_direct") - before;
    // 63 of the 64 writes, 8 fsyncs, the directory's and at least the 2 reads of 128 KiB
    assertTrue(direct >= 63 + 8 + 1 + 2, "requests answered directly: " + direct);
    assertArrayEquals(expect, Files.readAllBytes(wcfs.mountpoint.resolve("f")));
    wcfs.umount();
    assertArrayEquals(expect, Files.readAllBytes(wcfs.backing.resolve("f")));
  }

  /** A FUSE request counter of status; 0 while its opcode was never seen. */
  private long requests(String field) throws Exception {
    String out = WcfsProcess.run(30, "status", "--json", wcfs.mountpoint.toString()).out();
    Matcher m = Pattern.compile("\"" + field + "\": (\\d+)").matcher(out);
    return m.find() ? Long.parseLong(m.group(1)) : 0;
  }
}
