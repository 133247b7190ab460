package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CyclicBarrier;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * truncate against a racing write into the block that holds the new end of file: the outcome
 * must be one of the two serial orders. Before truncate zeroed the tail under the file's lock,
 * the write could land between the zeroing and the new size, leaving its byte past the new end,
 * where a later extension showed it instead of zeros.
 */
@Timeout(120)
class TruncateRaceTest {
  private static final int BS = 512;
  @TempDir Path tmp;

  @Test
  @DisplayName("truncate racing a write into the tail block: only serial outcomes")
  void truncateAndWriteSerialize() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.createFile(root.resolve("f"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(256, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache c = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS));
    WriteCache.OpenFile h = c.open("f");
    try (NativeBuffer ones = new NativeBuffer(BS); NativeBuffer one = new NativeBuffer(1);
        NativeBuffer back = new NativeBuffer(BS)) {
      byte[] ff = new byte[BS];
      java.util.Arrays.fill(ff, (byte) 0xff);
      ones.put(0, ff, 0, BS);
      one.put(0, new byte[] {(byte) 0xaa}, 0, 1);
      CyclicBarrier start = new CyclicBarrier(2);
      int bad = 0;
      for (int i = 0; i < 3000 && bad == 0; i++) {
        c.write(h, 0, ones.address(), BS);
        c.commit(); // committed: the tail zeroing must copy the block
        Thread writer = new Thread(() -> {
          try {
            start.await();
            c.write(h, 3 * BS / 4, one.address(), 1);
          } catch (Exception e) {
            throw new RuntimeException(e);
          }
        });
        writer.start();
        start.await();
        c.truncate(h, BS / 2);
        writer.join();
        long size = c.size(h);
        c.truncate(h, BS);
        c.read(h, 0, back.address(), BS);
        byte[] got = new byte[BS];
        back.get(0, got, 0, BS);
        for (int k = BS / 2; k < BS; k++) {
          byte want = size > BS / 2 && k == 3 * BS / 4 ? (byte) 0xaa : 0;
          if (got[k] != want) {
            bad++;
            break;
          }
        }
        c.truncate(h, 0);
      }
      assertEquals(0, bad, "a write's byte survived past the end truncate set");
    } finally {
      c.close(h);
      c.close();
    }
  }
}
