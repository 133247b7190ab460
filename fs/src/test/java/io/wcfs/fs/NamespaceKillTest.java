package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import java.util.zip.CRC32;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * kill -9 of the daemon while clients lean on the namespace for durability: SQLite's rollback
 * journal (created, fsync'd, deleted for every transaction) and atomic saves (write a temp file,
 * fsync it, rename it over the target, fsync the directory). Each round mounts, runs the client,
 * kills the daemon at a random moment, remounts from the same cache and checks everything the
 * client was told is durable, then unmounts (full writeback) and checks the backing directory
 * directly: the same names and the same bytes as the mount showed. Rounds: {@code
 * -Dwcfs.nskill.rounds=N} (default 2); seed: {@code -Dwcfs.nskill.seed=S}, printed in failures.
 *
 * <p>Every client works in a subdirectory of the mount, so once the dead mount is lazily
 * unmounted its paths fail (ENOENT) instead of landing in the bare mountpoint directory.
 */
class NamespaceKillTest extends OwnMountTest {
  private static final int ROUNDS = Integer.getInteger("wcfs.nskill.rounds", 2);
  private static final long SEED = Long.getLong("wcfs.nskill.seed", 11L);

  // ---- SQLite, rollback journal ---------------------------------------------------------------

  @Test
  @Timeout(600)
  @DisplayName("kill -9 during SQLite transactions in DELETE journal mode: every acknowledged"
      + " row in the mount and, after unmount, in the backing directory")
  void sqliteDeleteJournal() throws Exception {
    Random rnd = new Random(SEED);
    Path backingDir = Files.createDirectories(wcfs.backing.resolve("db"));
    sqlite(backingDir.resolve("app.db"), "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        "seed " + SEED + ", creating the database");
    int rows = 0;
    for (int round = 0; round < ROUNDS; round++) {
      String where = "seed " + SEED + ", sqlite round " + round;
      Phases time = new Phases();
      wcfs.mount();
      long daemon = wcfs.daemonPid();
      time.mark("mount");
      Path db = wcfs.mountpoint.resolve("db/app.db");
      StringBuilder script = new StringBuilder(
          "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;\n");
      for (int i = rows; i < rows + 100_000; i++) {
        script.append("BEGIN; INSERT INTO t VALUES(").append(i).append(", printf('%x', ")
            .append(i).append(" * 31)); COMMIT; SELECT 'ack ").append(i).append("';\n");
      }
      Path sql = tmp.resolve("script.sql");
      Files.writeString(sql, script);
      // -bail: after the first failed statement sqlite3 stops, so no 'ack' follows a failed
      // COMMIT (without it the shell goes on, and SELECT of a constant needs no file).
      Process p = new ProcessBuilder("sqlite3", "-bail", db.toString())
          .redirectInput(sql.toFile()).redirectErrorStream(true).start();
      AtomicInteger lastAck = new AtomicInteger(rows - 1);
      StringBuffer other = new StringBuffer();
      Thread reader = new Thread(() -> {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
          for (String line; (line = r.readLine()) != null; ) {
            if (line.startsWith("ack ")) {
              lastAck.set(Integer.parseInt(line.substring(4)));
            } else if (other.length() < 4000) {
              other.append(line).append('\n');
            }
          }
        } catch (IOException e) {
          // the pipe closed with sqlite3
        }
      });
      reader.setDaemon(true);
      reader.start();
      try {
        Thread.sleep(200 + rnd.nextInt(1000));
        time.mark("run");
        assertTrue(p.isAlive(), where + ": sqlite3 ended before the kill (" + lastAck.get()
            + " acknowledged): " + other + wcfs.log());
        wcfs.kill9(daemon);
        time.mark("kill");
      } finally {
        p.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
        reader.join(10_000);
      }
      int acked = lastAck.get() + 1;
      assertTrue(acked > rows, where + ": no transaction was acknowledged in the round: "
          + other);

      wcfs.mount();
      time.mark("remount");
      int inMount = checkDatabase(db, acked, where + ", in the mount after the remount");
      TreeMap<String, String> mountFiles = snapshot(wcfs.mountpoint, List.of("db"));
      time.mark("check");
      wcfs.umount();
      time.mark("umount");
      assertEquals(mountFiles, snapshot(wcfs.backing, List.of("db")),
          where + ": after unmount the backing directory holds the names and bytes the mount"
              + " showed");
      // Checked on a copy, so that the check itself cannot change the backing directory.
      Path copy = Files.createDirectories(tmp.resolve("check-" + round));
      Path copyDb = copy.resolve("app.db");
      Files.copy(backingDir.resolve("app.db"), copyDb);
      int inBacking = checkDatabase(copyDb, acked, where + ", in the backing directory");
      assertEquals(inMount, inBacking, where + ": rows in the mount and in the backing");
      System.out.println(where + ": " + (acked - rows) + " transactions acknowledged, "
          + (inMount - rows) + " found; " + time);
      rows = inMount;
    }
    assertTrue(rows > ROUNDS, "sqlite made progress: " + rows + " rows");
  }

  /** integrity_check ok, rows 0..n-1 with their values and no gap, n >= acked; returns n. */
  private int checkDatabase(Path db, int acked, String where) throws Exception {
    String out = sqlite(db, "PRAGMA integrity_check; SELECT count(*), coalesce(max(id), -1)"
        + " FROM t; SELECT count(*) FROM t WHERE v <> printf('%x', id * 31);", where);
    String[] lines = out.split("\n");
    assertEquals(3, lines.length, where + ": " + out);
    assertEquals("ok", lines[0], where + ": integrity_check: " + out);
    String[] countMax = lines[1].split("\\|");
    int count = Integer.parseInt(countMax[0]);
    int max = Integer.parseInt(countMax[1]);
    assertEquals(count, max + 1, where + ": ids 0.." + max + " without a gap: " + out);
    assertTrue(count >= acked, where + ": " + count + " rows, " + acked
        + " were acknowledged: " + out);
    assertEquals("0", lines[2], where + ": rows with a wrong value: " + out);
    return count;
  }

  private static String sqlite(Path db, String sql, String where) throws Exception {
    Process p = new ProcessBuilder("sqlite3", "-bail", db.toString(), sql)
        .redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      fail(where + ": sqlite3 did not finish in 60 s");
    }
    assertEquals(0, p.exitValue(), where + ": sqlite3 " + sql + ": " + out);
    return out;
  }

  // ---- atomic saves ---------------------------------------------------------------------------

  /** One saver: writes tmp, fsyncs it, renames it over target, fsyncs syncDirs (in order). */
  record Saver(String tmp, String target, List<String> syncDirs) {}

  @Test
  @Timeout(600)
  @DisplayName("kill -9 during atomic saves (temp file, fsync, rename over, fsync dir): one"
      + " target")
  void atomicSaveOneTarget() throws Exception {
    atomicSaves(List.of(new Saver("docs/report.tmp", "docs/report", List.of("docs"))));
  }

  @Test
  @Timeout(600)
  @DisplayName("kill -9 during atomic saves: four targets in two directories, concurrently")
  void atomicSaveFourTargetsTwoDirectories() throws Exception {
    atomicSaves(List.of(
        new Saver("a/one.tmp", "a/one", List.of("a")),
        new Saver("a/two.tmp", "a/two", List.of("a")),
        new Saver("b/one.tmp", "b/one", List.of("b")),
        new Saver("b/two.tmp", "b/two", List.of("b"))));
  }

  @Test
  @Timeout(600)
  @DisplayName("kill -9 during atomic saves whose temp file is in a subdirectory, renamed"
      + " across directories")
  void atomicSaveAcrossDirectories() throws Exception {
    atomicSaves(List.of(
        // up from a subdirectory into its parent
        new Saver("a/staging/doc.tmp", "a/doc", List.of("a", "a/staging")),
        // from one directory into a sibling
        new Saver("b/incoming/doc.tmp", "c/doc", List.of("c", "b/incoming"))));
  }

  private void atomicSaves(List<Saver> savers) throws Exception {
    Random rnd = new Random(SEED + savers.size());
    List<String> dirs = new ArrayList<>();
    for (Saver s : savers) {
      for (String f : List.of(s.tmp(), s.target())) {
        String d = Path.of(f).getParent().toString();
        if (!dirs.contains(d)) {
          dirs.add(d);
        }
      }
      Files.createDirectories(wcfs.backing.resolve(s.tmp()).getParent());
      Files.createDirectories(wcfs.backing.resolve(s.target()).getParent());
      // Document 0 is there before the first mount: the target is never legitimately missing.
      Files.write(wcfs.backing.resolve(s.target()), document(s.target(), 0));
    }
    int[] next = new int[savers.size()];
    java.util.Arrays.fill(next, 1);
    long saves = 0;
    for (int round = 0; round < ROUNDS; round++) {
      String where = "seed " + SEED + ", atomic-save round " + round;
      Phases time = new Phases();
      wcfs.mount();
      long daemon = wcfs.daemonPid();
      time.mark("mount");
      AtomicInteger[] acked = new AtomicInteger[savers.size()];
      Throwable[] early = new Throwable[1];
      boolean[] killed = {false};
      List<Thread> threads = new ArrayList<>();
      for (int i = 0; i < savers.size(); i++) {
        Saver s = savers.get(i);
        acked[i] = new AtomicInteger(next[i] - 1);
        AtomicInteger ack = acked[i];
        int from = next[i];
        Thread t = new Thread(() -> {
          try {
            for (int n = from; ; n++) {
              save(wcfs.mountpoint, s, n);
              ack.set(n);
            }
          } catch (IOException | RuntimeException e) {
            synchronized (killed) {
              if (!killed[0] && early[0] == null) {
                early[0] = e;
              }
            }
          }
        }, "saver " + s.target());
        t.setDaemon(true);
        threads.add(t);
      }
      threads.forEach(Thread::start);
      try {
        Thread.sleep(200 + rnd.nextInt(1000));
        time.mark("run");
        synchronized (killed) {
          killed[0] = true;
          if (early[0] != null) {
            throw new AssertionError(where + ": a save failed before the kill", early[0]);
          }
        }
        wcfs.kill9(daemon);
        time.mark("kill");
      } finally {
        for (Thread t : threads) {
          t.join(30_000);
        }
      }
      for (Thread t : threads) {
        assertTrue(!t.isAlive(), where + ": " + t.getName() + " stuck after the kill");
      }

      wcfs.mount();
      time.mark("remount");
      for (int i = 0; i < savers.size(); i++) {
        Saver s = savers.get(i);
        byte[] got = Files.readAllBytes(wcfs.mountpoint.resolve(s.target()));
        int m = checkDocument(s.target(), got, where + ", in the mount after the remount");
        assertTrue(m >= acked[i].get(), where + ": " + s.target() + " holds document " + m
            + ", document " + acked[i].get() + " was acknowledged");
        saves += acked[i].get() - (next[i] - 1);
        next[i] = m + 1;
      }
      TreeMap<String, String> mountFiles = snapshot(wcfs.mountpoint, dirs);
      time.mark("check");
      wcfs.umount();
      time.mark("umount");
      assertEquals(mountFiles, snapshot(wcfs.backing, dirs), where
          + ": after unmount the backing directory holds the names and bytes the mount showed");
      for (Saver s : savers) {
        checkDocument(s.target(), Files.readAllBytes(wcfs.backing.resolve(s.target())),
            where + ", in the backing directory");
      }
      System.out.println(where + ": " + savers.size() + " savers, next documents "
          + java.util.Arrays.toString(next) + ", " + saves + " saves acknowledged so far; "
          + time);
    }
    assertTrue(saves > ROUNDS, "the savers made progress: " + saves + " acknowledged saves");
  }

  private static void save(Path root, Saver s, int n) throws IOException {
    Path tmpFile = root.resolve(s.tmp());
    try (FileChannel c = FileChannel.open(tmpFile, StandardOpenOption.CREATE,
        StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
      ByteBuffer b = ByteBuffer.wrap(document(s.target(), n));
      while (b.hasRemaining()) {
        c.write(b);
      }
      c.force(true);
    }
    // rename(2), replacing the target
    Files.move(tmpFile, root.resolve(s.target()), StandardCopyOption.ATOMIC_MOVE);
    for (String d : s.syncDirs()) {
      try (FileChannel dc = FileChannel.open(root.resolve(d), StandardOpenOption.READ)) {
        dc.force(true);
      }
    }
  }

  /**
   * Document n of a target: a header line "wcfs-doc TARGET N LENGTH CRC32" and LENGTH bytes
   * derived from the target and N, so a torn, mixed, truncated or misplaced document shows.
   */
  static byte[] document(String target, int n) {
    Random r = new Random(target.hashCode() * 1_000_003L + n);
    byte[] body = new byte[1 + r.nextInt(20_000)];
    r.nextBytes(body);
    CRC32 crc = new CRC32();
    crc.update(body);
    byte[] head = ("wcfs-doc " + target + " " + n + " " + body.length + " " + crc.getValue()
        + "\n").getBytes(StandardCharsets.US_ASCII);
    byte[] doc = new byte[head.length + body.length];
    System.arraycopy(head, 0, doc, 0, head.length);
    System.arraycopy(body, 0, doc, head.length, body.length);
    return doc;
  }

  /** Asserts that bytes are one whole document of target; returns its number. */
  static int checkDocument(String target, byte[] got, String where) {
    int nl = -1;
    for (int i = 0; i < Math.min(got.length, 200); i++) {
      if (got[i] == '\n') {
        nl = i;
        break;
      }
    }
    String head = nl < 0 ? "" : new String(got, 0, nl, StandardCharsets.US_ASCII);
    String[] f = head.split(" ");
    assertTrue(f.length == 5 && f[0].equals("wcfs-doc") && f[1].equals(target), where + ": "
        + target + " (" + got.length + " bytes) does not start with its header: " + head);
    int n = Integer.parseInt(f[2]);
    assertArrayEquals(document(target, n), got, where + ": " + target + " is not exactly"
        + " document " + n + " (" + got.length + " bytes, header " + head + ")");
    return n;
  }

  // ---- common ---------------------------------------------------------------------------------

  /** Where a round's time went: "mount 1.9 s, run 0.8 s, ...". */
  static final class Phases {
    private final StringBuilder sb = new StringBuilder();
    private long last = System.nanoTime();

    void mark(String phase) {
      long now = System.nanoTime();
      sb.append(sb.length() == 0 ? "" : ", ").append(phase)
          .append(String.format(" %.1f s", (now - last) / 1e9));
      last = now;
    }

    @Override
    public String toString() {
      return sb.toString();
    }
  }

  /** Every file and directory under dirs of root: relative path -> "dir" or "LENGTH CRC32". */
  static TreeMap<String, String> snapshot(Path root, List<String> dirs) throws IOException {
    TreeMap<String, String> m = new TreeMap<>();
    for (String d : dirs) {
      try (Stream<Path> s = Files.walk(root.resolve(d))) {
        for (Path p : s.toList()) {
          String rel = root.relativize(p).toString();
          if (Files.isDirectory(p)) {
            m.put(rel, "dir");
          } else {
            byte[] b = Files.readAllBytes(p);
            CRC32 crc = new CRC32();
            crc.update(b);
            m.put(rel, b.length + " bytes, crc " + crc.getValue());
          }
        }
      }
    }
    return m;
  }
}
