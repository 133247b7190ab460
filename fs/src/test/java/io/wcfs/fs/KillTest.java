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
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * kill -9 of the daemon while an appender and an overwriter fsync continuously; the next mount
 * from the same cache must show every acknowledged record and write, and after unmount the
 * backing directory must hold them. Seeds are printed in failure messages.
 */
@Timeout(900)
class KillTest extends OwnMountTest {
  private static final int RECORD = 64;
  private static final int ROUNDS = Integer.getInteger("wcfs.kill.rounds", 24);
  private static final int SQLITE_ROUNDS = Integer.getInteger("wcfs.kill.sqliteRounds", 8);

  @Test
  @DisplayName("kill -9 during SQLite transactions (synchronous=FULL, WAL and rollback journal)")
  void killDuringSqlite() throws Exception {
    long seed = Long.getLong("wcfs.kill.seed", 7L);
    Random rnd = new Random(seed + 1);
    wcfs.mount();
    int committed = 0;
    for (int round = 0; round < SQLITE_ROUNDS; round++) {
      String mode = round % 2 == 0 ? "wal" : "delete";
      String where = "seed " + seed + ", sqlite kill " + round + " (" + mode + ")";
      Path db = wcfs.mountpoint.resolve("app.db");
      StringBuilder script = new StringBuilder("PRAGMA journal_mode=" + mode
          + "; PRAGMA synchronous=FULL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY,"
          + " v TEXT NOT NULL);\n");
      for (int i = committed; i < committed + 100_000; i++) {
        script.append("BEGIN; INSERT INTO t VALUES(").append(i).append(", '")
            .append(Integer.toHexString(i * 31)).append("'); COMMIT; SELECT 'ack ' || ")
            .append(i).append(";\n");
      }
      Path sql = tmp.resolve("script.sql");
      Files.writeString(sql, script);
      Process p = new ProcessBuilder("sqlite3", db.toString()).redirectInput(sql.toFile())
          .redirectErrorStream(true).start();
      int[] lastAck = {committed - 1};
      Thread reader = new Thread(() -> {
        try (java.io.BufferedReader r = new java.io.BufferedReader(
            new java.io.InputStreamReader(p.getInputStream()))) {
          for (String line; (line = r.readLine()) != null; ) {
            if (line.startsWith("ack ")) {
              lastAck[0] = Integer.parseInt(line.substring(4));
            }
          }
        } catch (IOException e) {
          // sqlite3 died with the mount
        }
      });
      reader.start();
      Thread.sleep(300 + rnd.nextInt(700));
      wcfs.kill9();
      p.destroyForcibly().waitFor();
      reader.join(10_000);
      int acked = lastAck[0] + 1;
      wcfs.mount();
      Process check = new ProcessBuilder("sqlite3", db.toString(),
          "PRAGMA integrity_check; SELECT count(*) FROM t WHERE id < " + acked
              + "; SELECT max(id) FROM t;").redirectErrorStream(true).start();
      String out = new String(check.getInputStream().readAllBytes()).trim();
      check.waitFor(60, java.util.concurrent.TimeUnit.SECONDS);
      String[] lines = out.split("\n");
      assertEquals("ok", lines[0], where + ": integrity_check: " + out);
      assertEquals(Integer.toString(acked), lines[1], where + ": every acknowledged row of "
          + acked + " is there: " + out);
      committed = lines.length > 2 && !lines[2].isBlank() ? Integer.parseInt(lines[2]) + 1
          : acked;
      assertTrue(committed >= acked, where);
    }
    wcfs.umount();
    assertTrue(committed > SQLITE_ROUNDS, "sqlite made progress: " + committed + " rows");
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
    wcfs.mount();
    for (int round = 0; round < ROUNDS; round++) {
      String where = "seed " + seed + ", kill " + round;
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
      Thread.sleep(100 + rnd.nextInt(600));
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
      for (int n = 0; n < acknowledged; n++) {
        assertArrayEquals(record(n), Arrays.copyOfRange(got, n * RECORD, (n + 1) * RECORD),
            where + ": acknowledged record " + n);
      }
      // Records after the last acknowledged one may or may not be there: trim them, so the
      // next round appends right after the acknowledged ones.
      try (FileChannel c = FileChannel.open(log, StandardOpenOption.WRITE)) {
        c.truncate((long) acknowledged * RECORD);
        c.force(true);
      }
      byte[] t = Files.readAllBytes(table);
      int differing = 0;
      for (int i = 0; i < t.length; i++) {
        if (t[i] != overwriteModel[i]) {
          differing++;
        }
      }
      assertTrue(differing <= 5000, where + ": " + differing
          + " bytes of the table differ from its acknowledged state (the one write in flight"
          + " is at most 5000)");
      try (FileChannel c = FileChannel.open(table, StandardOpenOption.WRITE)) {
        c.write(ByteBuffer.wrap(overwriteModel), 0); // back to the acknowledged state
        c.force(true);
      }
    }
    wcfs.umount();
    byte[] backLog = Files.readAllBytes(wcfs.backing.resolve("log"));
    assertEquals(acknowledged * RECORD, backLog.length, "backing log after unmount");
    assertArrayEquals(overwriteModel, Files.readAllBytes(wcfs.backing.resolve("table")),
        "backing table after unmount");
    assertTrue(acknowledged > ROUNDS, "the writer made progress: " + acknowledged + " records");
  }
}
