package io.wcfs.nativ;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IoVecTest {
  @TempDir Path tmp;

  @Test
  @DisplayName("pwritev writes scattered buffers back to back; adjacent buffers share an entry")
  void gatherWrite() throws IOException {
    try (NativeBuffer mem = new NativeBuffer(3 * 4096, 4096); IoVec iov = new IoVec(2)) {
      byte[] expected = new byte[3 * 4096];
      for (int page = 0; page < 3; page++) {
        byte[] b = new byte[4096];
        Arrays.fill(b, (byte) ('a' + page));
        mem.put(page * 4096L, b, 0, b.length);
      }
      // file order: page 2, then pages 0 and 1 (adjacent in memory: one entry)
      iov.add(mem.address() + 2 * 4096, 4096);
      iov.add(mem.address(), 4096);
      iov.add(mem.address() + 4096, 4096);
      assertEquals(2, iov.count());
      assertEquals(8192, iov.length(1));
      assertTrue(iov.aligned(4096));
      Arrays.fill(expected, 0, 4096, (byte) 'c');
      Arrays.fill(expected, 4096, 8192, (byte) 'a');
      Arrays.fill(expected, 8192, 12288, (byte) 'b');

      Path f = tmp.resolve("out");
      Files.write(f, new byte[100]);
      int fd = LibC.open(f.toString(), LibC.O_WRONLY, 0);
      try {
        LibC.pwritev(fd, iov, 4096);
      } finally {
        LibC.close(fd);
      }
      byte[] got = Files.readAllBytes(f);
      assertEquals(4096 + expected.length, got.length);
      assertArrayEquals(expected, Arrays.copyOfRange(got, 4096, got.length));

      iov.clear();
      iov.add(mem.address() + 512, 4096);
      assertFalse(iov.aligned(4096), "O_DIRECT alignment is checked on addresses");
    }
  }
}
