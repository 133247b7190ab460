package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** What the mount negotiates with the kernel: request sizes and page-cache reuse. */
@Timeout(120)
class KernelInterfaceTest extends MountTestBase {

  @Test
  @DisplayName("a 1 MiB write reaches the daemon as one request (max_pages negotiated at INIT)")
  void oneMegabyteWriteIsOneRequest() throws Exception {
    byte[] data = randomBytes(1 << 20, 7);
    Path f = mnt.resolve("big.bin");
    try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE,
        StandardOpenOption.WRITE)) {
      // a direct buffer: one write(2) of the whole MiB, no JDK chunking
      ByteBuffer b = ByteBuffer.allocateDirect(data.length);
      b.put(data).flip();
      assertEquals(data.length, ch.write(b, 0));
      ch.force(false);
    }
    assertEquals(1 << 20, wcfs.statusNumber("largest_write_request_bytes"));
    assertArrayEquals(data, Files.readAllBytes(f));
  }

  @Test
  @DisplayName("reopening a file keeps its pages in the kernel's cache (no reads reach wcfs)")
  void reopenKeepsPageCache() throws Exception {
    byte[] data = randomBytes(256 << 10, 8);
    Path f = mnt.resolve("reread.bin");
    Files.write(f, data);
    assertArrayEquals(data, Files.readAllBytes(f)); // now in the page cache, whatever it was
    long reads = wcfs.statusNumber("reads");
    for (int i = 0; i < 3; i++) {
      assertArrayEquals(data, Files.readAllBytes(f)); // each one opens the file again
    }
    assertEquals(reads, wcfs.statusNumber("reads"), "reads after reopening reached the daemon");
  }

  private static byte[] randomBytes(int size, long seed) {
    byte[] b = new byte[size];
    new Random(seed).nextBytes(b);
    return b;
  }
}
