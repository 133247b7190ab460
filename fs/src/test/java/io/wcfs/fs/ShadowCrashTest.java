package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.core.ShadowCrashMemory;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The engine's crash simulator, end to end: the daemon runs with a cache memory that keeps only
 * committed flushes in a shadow file (WCFS_TEST_CRASH_SHADOW=1). After kill -9 the shadow
 * replaces the cache file, as if the machine had lost everything not yet made durable, so a
 * kill inside a commit checks the commit order through the real mount.
 */
@Timeout(600)
class ShadowCrashTest extends OwnMountTest {
  private static final int ROUNDS = Integer.getInteger("wcfs.shadow.rounds", 8);
  @BeforeEach
  void shadowMode() {
    wcfs.env.put("WCFS_TEST_CRASH_SHADOW", "1");
  }

  @Test
  @DisplayName("kill -9 with unflushed stores dropped: every acknowledged fsync survives")
  void unflushedStoresDropped() throws Exception {
    crashLoop("pmem mapping", ROUNDS);
  }

  @Test
  @DisplayName("the same with the cache on a disk (page-cache mapping): one-flush commits with"
      + " commit records, torn by the kill, count whole or not at all")
  void diskCacheCommitRecords() throws Exception {
    wcfs.env.put("PMEM_IS_PMEM_FORCE", "0"); // libpmem: not persistent memory
    crashLoop("page-cache mapping", Math.max(3, ROUNDS / 3));
  }

  private void crashLoop(String backend, int rounds) throws Exception {
    long seed = Long.getLong("wcfs.shadow.seed", 11L);
    Random rnd = new Random(seed);
    Path cacheFile = wcfs.cacheDir.resolve("wcfs.cache");
    int acknowledged = 0;
    wcfs.mount("--cache-size", "16M", "--autocommit-blocks", "8");
    WcfsProcess.Result status = WcfsProcess.run(30, "status", wcfs.mountpoint.toString());
    assertTrue(status.out().contains(backend), "backend: " + status.all());
    for (int round = 0; round < rounds; round++) {
      String where = "seed " + seed + ", shadow kill " + round;
      Path log = wcfs.mountpoint.resolve("log");
      AtomicInteger acked = new AtomicInteger(acknowledged);
      Thread writer = new Thread(() -> {
        try (FileChannel c = FileChannel.open(log, StandardOpenOption.CREATE,
            StandardOpenOption.WRITE, StandardOpenOption.APPEND)) {
          for (int n = acked.get(); ; n++) {
            c.write(ByteBuffer.wrap(KillTest.record(n)));
            if (n % 3 != 0) {
              c.force(false); // every third record rides on a later commit
              acked.set(n + 1);
            }
          }
        } catch (IOException e) {
          // killed
        }
      });
      writer.start();
      Thread.sleep(150 + rnd.nextInt(500));
      wcfs.kill9();
      writer.join(30_000);
      acknowledged = acked.get();
      // What the machine would have kept: only flushed-and-committed stores.
      Files.copy(ShadowCrashMemory.shadowOf(cacheFile), cacheFile,
          StandardCopyOption.REPLACE_EXISTING);
      // A power failure reboots the machine: the next mount is in another boot, where only
      // committed data counts (zero = unknown boot).
      try (FileChannel c = FileChannel.open(cacheFile, StandardOpenOption.WRITE)) {
        c.write(ByteBuffer.allocate(8), io.wcfs.core.CacheLayout.BOOT_WORD_OFFSET);
      }
      wcfs.mount();
      byte[] got = Files.readAllBytes(log);
      assertTrue(got.length >= acknowledged * 64, where + ": " + got.length + " bytes for "
          + acknowledged + " acknowledged records");
      for (int n = 0; n < acknowledged; n++) {
        assertArrayEquals(KillTest.record(n), Arrays.copyOfRange(got, n * 64, n * 64 + 64),
            where + ": record " + n);
      }
      try (FileChannel c = FileChannel.open(log, StandardOpenOption.WRITE)) {
        c.truncate((long) acknowledged * 64);
        c.force(true);
      }
    }
    wcfs.umount();
    assertTrue(acknowledged > rounds, "progress: " + acknowledged);
    assertTrue(Files.size(wcfs.backing.resolve("log")) == acknowledged * 64L, "backing log");
  }
}
