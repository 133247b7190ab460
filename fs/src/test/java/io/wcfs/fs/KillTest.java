package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
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
import java.util.zip.CRC32;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * kill -9 of the daemon while an appender and an overwriter fsync continuously; the next mount
 * from the same cache must show every acknowledged record and write, and after unmount the
 * backing directory must hold them. Seeds are printed in failure messages.
 */
@Timeout(600)
class KillTest {
  private static final int RECORD = 64;
  private static final int ROUNDS = Integer.getInteger("wcfs.kill.rounds", 6);
  @TempDir Path tmp;
  WcfsProcess wcfs;

  @BeforeEach
  void setUp() throws IOException {
    wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir("kill"),
        Files.createDirectories(tmp.resolve("backing")), Files.createDirectories(tmp.resolve("m")));
  }

  @AfterEach
  void tearDown() throws Exception {
    try {
      wcfs.close();
    } finally {
      WcfsProcess.deleteTree(wcfs.cacheDir);
    }
  }

  static byte[] record(int n) {
    ByteBuffer b = ByteBuffer.allocate(RECORD);
    b.putInt(n);
    byte[] payload = new byte[RECORD - 12];
    new Random(n).nextBytes(payload);
    b.put(payload);
    CRC32 crc = new CRC32();
    crc.update(b.array(), 0, RECORD - 8);
    b.putLong(crc.getValue());
    return b.array();
  }

  @Test
  @DisplayName("kill -9 loses nothing that was fsync'd")
  void killNineLosesNothingAcknowledged() throws Exception {
    long seed = Long.getLong("wcfs.kill.seed", 7L);
    Random rnd = new Random(seed);
    int acknowledged = 0;
    byte[] overwriteModel = new byte[256 * 1024];
    Files.write(wcfs.backing.resolve("table"), overwriteModel);
    for (int round = 0; round < ROUNDS; round++) {
      String where = "seed " + seed + ", kill " + round;
      wcfs.mount();
      Path log = wcfs.mountpoint.resolve("log");
      Path table = wcfs.mountpoint.resolve("table");
      AtomicInteger acked = new AtomicInteger(acknowledged);
      byte[][] tableAcked = {overwriteModel.clone()};
      Random wr = new Random(rnd.nextLong());
      Thread writer = new Thread(() -> {
        try (FileChannel lc = FileChannel.open(log, StandardOpenOption.CREATE,
            StandardOpenOption.WRITE, StandardOpenOption.APPEND);
            FileChannel tc = FileChannel.open(table, StandardOpenOption.WRITE)) {
          byte[] shadow = tableAcked[0].clone();
          for (int n = acked.get(); ; n++) {
            lc.write(ByteBuffer.wrap(record(n)));
            int off = wr.nextInt(shadow.length - 5000);
            byte[] chunk = new byte[1 + wr.nextInt(5000)];
            wr.nextBytes(chunk);
            tc.write(ByteBuffer.wrap(chunk), off);
            System.arraycopy(chunk, 0, shadow, off, chunk.length);
            lc.force(true); // one commit covers both files
            acked.set(n + 1);
            tableAcked[0] = shadow.clone();
          }
        } catch (IOException e) {
          // the daemon was killed under us
        }
      });
      writer.start();
      Thread.sleep(200 + rnd.nextInt(800));
      wcfs.kill9();
      writer.join(30_000);
      assertTrue(!writer.isAlive(), where + ": writer stuck after the kill");
      acknowledged = acked.get();
      overwriteModel = tableAcked[0];
      // Remount from the same cache: recovery must serve every acknowledged record.
      wcfs.mount();
      byte[] got = Files.readAllBytes(log);
      assertTrue(got.length >= acknowledged * RECORD, where + ": log has " + got.length
          + " bytes, " + acknowledged + " records were acknowledged");
      for (int n = 0; n < got.length / RECORD; n++) {
        byte[] r = Arrays.copyOfRange(got, n * RECORD, (n + 1) * RECORD);
        if (n < acknowledged) {
          assertArrayEquals(record(n), r, where + ": acknowledged record " + n);
        } else {
          break; // records after the last acknowledged one may or may not be there
        }
      }
      // Trim what was not acknowledged so the next round appends after the acknowledged ones.
      try (FileChannel c = FileChannel.open(log, StandardOpenOption.WRITE)) {
        c.truncate((long) acknowledged * RECORD);
      }
      byte[] t = Files.readAllBytes(table);
      // Unacknowledged overwrites may have landed; the acknowledged state must be a subset
      // check: every byte equals the acknowledged model or came from the in-flight write.
      int differing = 0;
      for (int i = 0; i < t.length; i++) {
        if (t[i] != overwriteModel[i]) {
          differing++;
        }
      }
      assertTrue(differing <= 5000, where + ": " + differing
          + " bytes of the table differ from its acknowledged state (one in-flight write"
          + " is at most 5000)");
      Files.write(table, overwriteModel); // back to the acknowledged state, through the mount
      wcfs.umount();
      byte[] backLog = Files.readAllBytes(wcfs.backing.resolve("log"));
      assertEquals(acknowledged * RECORD, backLog.length, where + ": backing log after unmount");
      assertArrayEquals(overwriteModel, Files.readAllBytes(wcfs.backing.resolve("table")),
          where + ": backing table after unmount");
    }
    assertTrue(acknowledged > ROUNDS, "the writer made progress: " + acknowledged + " records");
  }
}
