package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * kill -9 of the daemon in the boot the cache was mounted in: every write that returned is
 * there after the remount, fsync'd or not (the machine kept every store the daemon made into
 * the cache mapping), and status says a same-boot recovery ran.
 */
@Timeout(300)
class DaemonCrashTest extends OwnMountTest {
  private static final int ROUNDS = Integer.getInteger("wcfs.daemoncrash.rounds", 5);

  @Test
  @DisplayName("kill -9 during writes without fsync: every write that returned survives")
  void writesWithoutFsyncSurvive() throws Exception {
    Random rnd = new Random(3);
    int acknowledged = 0;
    wcfs.mount("--autocommit-blocks", "1000000", "--autocommit-time", "600000");
    for (int round = 0; round < ROUNDS; round++) {
      String where = "daemon kill " + round;
      Path log = wcfs.mountpoint.resolve("log");
      AtomicInteger acked = new AtomicInteger(acknowledged);
      Thread writer = new Thread(() -> {
        try (FileChannel c = FileChannel.open(log, StandardOpenOption.CREATE,
            StandardOpenOption.WRITE)) {
          for (int n = acked.get(); ; n++) {
            c.write(ByteBuffer.wrap(KillTest.record(n)), (long) n * 64); // never fsync'd
            acked.set(n + 1);
          }
        } catch (IOException e) {
          // killed
        }
      });
      writer.start();
      Thread.sleep(200 + rnd.nextInt(400));
      wcfs.kill9();
      writer.join(30_000);
      acknowledged = acked.get();
      wcfs.mount("--autocommit-blocks", "1000000", "--autocommit-time", "600000");
      assertTrue(wcfs.log().contains("same-boot recovery: committed"), where + wcfs.log());
      byte[] got = Files.readAllBytes(log);
      assertTrue(got.length >= acknowledged * 64, where + ": " + got.length + " bytes for "
          + acknowledged + " written records");
      for (int n = 0; n < acknowledged; n++) {
        assertArrayEquals(KillTest.record(n), Arrays.copyOfRange(got, n * 64, n * 64 + 64),
            where + ": record " + n + " of " + acknowledged);
      }
    }
    wcfs.umount();
    assertTrue(acknowledged > ROUNDS, "progress: " + acknowledged);
  }
}
