package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.LongAdder;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * 16 threads of mixed reads, writes and fsyncs over files four times larger than the cache.
 * Each thread owns interleaved 512-byte stripes of every file, so the final content is known;
 * readers check that every stripe they see is whole. The suite runs it for 30 s;
 * examples/load.sh runs it for 10 minutes (-Dwcfs.load.seconds=600).
 */
@Timeout(1800)
class LoadTest extends MountTestBase {
  private static final int THREADS = 16;
  private static final int STRIPE = 512;
  private static final int FILES = 4;
  private static final int FILE_SIZE = 16 << 20; // 4 x 16 MiB over a 16 MiB cache
  private static final long SECONDS = Long.getLong("wcfs.load.seconds", 30);

  @Override
  String[] mountOptions() {
    return new String[] {"--cache-size", "16M"};
  }

  private static byte[] stripe(int owner, int version) {
    byte[] b = new byte[STRIPE];
    Arrays.fill(b, (byte) (owner * 16 + version % 15 + 1));
    b[0] = (byte) owner;
    return b;
  }

  private long anonRssKb() throws Exception {
    long pid = wcfs.daemonPid();
    for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
      if (l.startsWith("RssAnon:")) {
        return Long.parseLong(l.replaceAll("\\D", ""));
      }
    }
    return -1;
  }

  @Test
  @DisplayName("16 threads, files larger than the cache: no errors, model matches, RSS plateaus")
  void mixedLoad() throws Exception {
    for (int f = 0; f < FILES; f++) {
      try (FileChannel c = FileChannel.open(mnt.resolve("f" + f), StandardOpenOption.CREATE,
          StandardOpenOption.WRITE)) {
        c.truncate(FILE_SIZE);
        c.write(ByteBuffer.wrap(new byte[1]), FILE_SIZE - 1);
      }
    }
    int stripes = FILE_SIZE / STRIPE;
    int[][] last = new int[FILES][stripes];
    ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
    LongAdder ops = new LongAdder();
    long end = System.nanoTime() + SECONDS * 1_000_000_000L;
    List<Thread> threads = new ArrayList<>();
    for (int t = 0; t < THREADS; t++) {
      final int owner = t;
      threads.add(new Thread(() -> {
        Random rnd = new Random(owner * 7919L);
        try {
          FileChannel[] ch = new FileChannel[FILES];
          for (int f = 0; f < FILES; f++) {
            ch[f] = FileChannel.open(mnt.resolve("f" + f), StandardOpenOption.READ,
                StandardOpenOption.WRITE);
          }
          ByteBuffer rb = ByteBuffer.allocate(STRIPE);
          for (int i = 1; System.nanoTime() < end; i++) {
            int f = rnd.nextInt(FILES);
            int s = rnd.nextInt(stripes / THREADS) * THREADS + owner;
            int kind = rnd.nextInt(10);
            if (kind < 6) {
              ch[f].write(ByteBuffer.wrap(stripe(owner, i)), (long) s * STRIPE);
              last[f][s] = i;
            } else if (kind < 9) {
              int any = rnd.nextInt(stripes);
              rb.clear();
              ch[f].read(rb, (long) any * STRIPE);
              byte[] got = rb.array();
              for (int k = 2; k < STRIPE; k++) {
                if (got[k] != got[1]) {
                  throw new AssertionError("f" + f + " stripe " + any + " torn");
                }
              }
            } else {
              ch[f].force(false);
            }
            ops.increment();
          }
          for (FileChannel c : ch) {
            c.close();
          }
        } catch (Throwable e) {
          errors.add(e);
        }
      }));
    }
    threads.forEach(Thread::start);
    Thread.sleep(SECONDS * 1000 / 3);
    long rssEarly = anonRssKb();
    for (Thread t : threads) {
      t.join();
    }
    long rssLate = anonRssKb();
    if (!errors.isEmpty()) {
      throw new AssertionError("worker failed", errors.peek());
    }
    WcfsProcess.Result status = WcfsProcess.run(30, "status", "--json", mnt.toString());
    assertTrue(status.out().contains("\"writeback_errors\": 0"), status.out());
    System.out.printf("load: %,d ops in %d s, anon RSS %d MiB at 1/3, %d MiB at end%n",
        ops.sum(), SECONDS, rssEarly / 1024, rssLate / 1024);
    assertTrue(rssLate < rssEarly * 1.5 + 64 * 1024, "RSS plateau: " + rssEarly + " kB at 1/3,"
        + " " + rssLate + " kB at the end");
    byte[][] expected = new byte[FILES][FILE_SIZE];
    for (int f = 0; f < FILES; f++) {
      for (int s = 0; s < stripes; s++) {
        if (last[f][s] > 0) {
          System.arraycopy(stripe(s % THREADS, last[f][s]), 0, expected[f], s * STRIPE, STRIPE);
        }
      }
      assertArrayEquals(expected[f], Files.readAllBytes(mnt.resolve("f" + f)), "f" + f);
    }
    wcfs.umount();
    for (int f = 0; f < FILES; f++) {
      assertArrayEquals(expected[f], Files.readAllBytes(backing.resolve("f" + f)),
          "backing f" + f);
    }
    // and nothing else, but the claim's own directory (BackingClaim)
    assertEquals(FILES, Files.list(backing).filter(p -> !p.getFileName().toString()
        .equals(BackingClaim.DIR)).count());
  }
}
