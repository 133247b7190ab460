package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A daemon crash (kill -9, OOM) in the boot the cache was mounted in loses nothing that
 * returned: every write whose stores completed is recovered, uncommitted or not, and committed
 * at once. A write still in flight may land in part, never with bytes it did not write. After a reboot (another boot id) only committed data counts, as before.
 */
@Timeout(120)
class SameBootRecoveryTest {
  private static final int BS = 512;
  private static final String[] NAMES = {"a", "b", "d/c"};
  @TempDir Path tmp;

  private static byte[] random(Random r, int len) {
    byte[] b = new byte[len];
    r.nextBytes(b);
    return b;
  }

  @Test
  @DisplayName("writes that returned but were never committed survive a daemon crash")
  void uncommittedWritesSurviveDaemonCrash() throws IOException {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.write(root.resolve("a"), new byte[3 * BS]);
    Files.createFile(root.resolve("new"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
    long boot = CacheFixture.nextBoot();
    WriteCache c = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
    Random r = new Random(1);
    byte[] a = CacheFixture.apply(new byte[3 * BS], 700, random(r, 2 * BS + 3));
    CacheFixture.write(c, "a", 700, Arrays.copyOfRange(a, 700, a.length));
    c.commit();
    byte[] more = random(r, 900);
    a = CacheFixture.apply(a, a.length - 10, more); // extends, uncommitted
    CacheFixture.write(c, "a", a.length - more.length, more);
    byte[] fresh = random(r, 5 * BS + 1);
    CacheFixture.write(c, "new", 0, fresh); // never committed at all
    c.abandon(); // kill -9: no commit, no writeback
    mem = mem.processCrash();
    WriteCache again = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
    try {
      assertArrayEquals(a, CacheFixture.read(again, "a"));
      assertArrayEquals(fresh, CacheFixture.read(again, "new"));
      assertTrue(again.stats().recovery().what().startsWith("same boot"),
          again.stats().recovery().what());
      again.abandon(); // and they were committed at once: a power failure now keeps them
      mem = mem.crash(new Random(2));
      WriteCache after = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS),
          CacheFixture.nextBoot());
      try {
        assertArrayEquals(a, CacheFixture.read(after, "a"));
        assertArrayEquals(fresh, CacheFixture.read(after, "new"));
        assertTrue(after.stats().recovery().what().startsWith("after a reboot"),
            after.stats().recovery().what());
        after.flush(10_000);
        assertArrayEquals(a, Files.readAllBytes(root.resolve("a")));
        assertArrayEquals(fresh, Files.readAllBytes(root.resolve("new")));
      } finally {
        after.close();
      }
    } finally {
      again.abandon();
    }
  }

  @Test
  @DisplayName("daemon killed at random points: every write that returned is there, nothing invented")
  void randomDaemonCrashes() throws IOException {
    for (int seed = 0; seed < 150; seed++) {
      runOne(seed);
    }
  }

  private void runOne(int seed) throws IOException {
    Random r = new Random(seed);
    Path root = Files.createDirectories(tmp.resolve("r" + seed));
    Files.createDirectories(root.resolve("d"));
    for (String n : NAMES) {
      Files.createFile(root.resolve(n));
    }
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(48, BS);
    CacheLayout.format(mem, BS, store.identity());
    long boot = CacheFixture.nextBoot();
    WriteCache c = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
    Map<String, byte[]> model = new HashMap<>();
    for (String n : NAMES) {
      model.put(n, new byte[0]);
    }
    mem.crashAfter(r.nextInt(400));
    String inFlight = null;
    byte[] before = null;
    byte[] after = null;
    try {
      for (int op = 0; op < 60; op++) {
        String n = NAMES[r.nextInt(NAMES.length)];
        byte[] cur = model.get(n);
        int kind = r.nextInt(10);
        inFlight = n;
        before = cur;
        if (kind < 7) {
          int off = r.nextInt(Math.min(cur.length + BS, 8 * BS) + 1);
          byte[] data = random(r, 1 + r.nextInt(2 * BS));
          after = CacheFixture.apply(cur, off, data);
          CacheFixture.write(c, n, off, data);
        } else if (kind < 8) {
          int size = r.nextInt(cur.length + BS);
          after = Arrays.copyOf(cur, size);
          c.truncate(n, size);
        } else {
          after = cur;
          c.commit();
        }
        model.put(n, after);
        inFlight = null;
      }
    } catch (CrashingMemory.SimulatedCrash | CacheErrorException e) {
      // the daemon died here; the op in flight did not return
    }
    c.abandon();
    mem = mem.processCrash();
    WriteCache rec = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
    try {
      for (String n : NAMES) {
        byte[] got = CacheFixture.read(rec, n);
        if (!n.equals(inFlight)) {
          assertArrayEquals(model.get(n), got, "seed " + seed + ": " + n + " after a daemon"
              + " crash: every write that returned");
          continue;
        }
        // The operation in flight did not return: it may have landed in part (a copy into a
        // block it had already written since the last commit is cut where the daemon died),
        // but every byte is either what it was before it or what it wrote.
        if (got.length != before.length && got.length != after.length) {
          fail("seed " + seed + ": " + n + " has size " + got.length + ", neither "
              + before.length + " nor " + after.length);
        }
        for (int i = 0; i < got.length; i++) {
          byte was = i < before.length ? before[i] : 0;
          byte now = i < after.length ? after[i] : 0;
          if (got[i] != was && got[i] != now) {
            fail("seed " + seed + ": " + n + " byte " + i + " is neither before nor after the"
                + " write in flight: invented");
          }
        }
        model.put(n, got);
      }
      rec.flush(10_000);
      for (String n : NAMES) {
        assertArrayEquals(model.get(n), Files.readAllBytes(root.resolve(n)),
            "seed " + seed + ": backing file " + n + " after writeback");
      }
    } finally {
      rec.close();
    }
  }


  @Test
  @DisplayName("status says which recovery ran")
  void statusNamesTheRecovery() throws IOException {
    Path root = Files.createDirectories(tmp.resolve("s"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(16, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache c = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
    try {
      assertEquals("first mount: kept committed data only; 0 uncommitted blocks dropped",
          c.stats().recovery().what());
    } finally {
      c.close();
    }
  }
}
