package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * wcfs over a real GlusterFS volume ({@link GlusterVolume}: a single-node volume on this
 * machine), mounted by two GlusterFS clients that stand in for two machines: each "machine"
 * runs its own wcfs with its own cache over its own client's view of one directory.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(600)
class GlusterBackingTest {
  private Path tmp;
  private GlusterVolume volume;
  private final List<WcfsProcess> mounts = new ArrayList<>();

  @BeforeAll
  void startVolume() throws Exception {
    tmp = Files.createTempDirectory("wcfs-GlusterBackingTest").toRealPath();
    // Below the class's timeouts: a hung GlusterFS client is killed, the test thread returns.
    volume = GlusterVolume.start(tmp, 2, Duration.ofMinutes(25));
  }

  @AfterAll
  void stopVolume() throws Exception {
    try {
      for (WcfsProcess w : mounts) {
        try {
          w.close(); // unmounts wcfs (writing back) before its backing goes away
        } catch (IOException | AssertionError e) {
          System.err.println("GlusterBackingTest: " + e);
        }
      }
    } finally {
      try {
        if (volume != null) {
          volume.close();
        }
      } finally {
        for (WcfsProcess w : mounts) {
          WcfsProcess.deleteTree(w.cacheDir);
        }
        WcfsProcess.deleteTree(tmp);
      }
    }
  }

  /** A wcfs on "machine" {@code client} (0 or 1) over {@code dir} of the volume. */
  private WcfsProcess wcfs(String name, int client, String dir) throws IOException {
    Path backing = Files.createDirectories(volume.client(client).resolve(dir));
    WcfsProcess w = new WcfsProcess(WcfsProcess.tmpfsCacheDir("Gluster" + name), backing,
        Files.createDirectories(tmp.resolve("m" + name)));
    mounts.add(w);
    return w;
  }

  /** `wcfs mount` of {@code w} with {@code extra} options, for its exit code and messages. */
  private static WcfsProcess.Result tryMount(WcfsProcess w, String... extra) throws Exception {
    List<String> args = new ArrayList<>(List.of("mount", "--cache-size", "64M"));
    args.addAll(List.of(extra));
    args.addAll(List.of(w.cacheDir.toString(), w.backing.toString(), w.mountpoint.toString()));
    WcfsProcess.Result r = WcfsProcess.run(w.env, 120, args.toArray(String[]::new));
    if (r.exitCode() == 0) {
      w.markMounted();
    }
    return r;
  }

  @Test
  @DisplayName("a second machine's wcfs over a claimed directory is refused, naming the holder;"
      + " so is one over the directory above it or one inside it")
  void secondMachineRefused() throws Exception {
    WcfsProcess a = wcfs("RefA", 0, "refused");
    WcfsProcess b = wcfs("RefB", 1, "refused");
    a.mount();
    WcfsProcess.Result r = tryMount(b);
    assertEquals(2, r.exitCode(), "the second machine's mount was accepted: " + r.all()
        + b.log());
    assertTrue(r.err().contains("backing directory " + b.backing + " is claimed by the wcfs"
        + " mount at " + a.mountpoint + " on host " + volume.host + " (cache " + a.cacheDir
        + "/wcfs.cache, pid " + a.daemonPid() + ", since "), r.err());

    WcfsProcess above = wcfs("RefAbove", 1, ".");
    WcfsProcess.Result ra = tryMount(above);
    assertEquals(2, ra.exitCode(), "the volume's root, above the claimed directory, was"
        + " accepted: " + ra.all());
    assertTrue(ra.err().contains("holds " + b.backing), ra.err());
    WcfsProcess inside = wcfs("RefIn", 1, "refused/inside");
    WcfsProcess.Result ri = tryMount(inside);
    assertEquals(2, ri.exitCode(), "a directory inside the claimed one was accepted: "
        + ri.all());
    assertTrue(ri.err().contains("is inside " + b.backing), ri.err());

    a.umount(); // releases the claim: the other machine may have it now
    b.mount();
    b.umount();
  }

  @Test
  @DisplayName("handoff: after `wcfs flush` the other machine sees every byte; after `wcfs"
      + " umount` its wcfs takes the directory over without --take-over")
  void handoffAfterFlush() throws Exception {
    WcfsProcess a = wcfs("HandA", 0, "handoff");
    Path other = Files.createDirectories(volume.client(1).resolve("handoff"));
    byte[] existing = bytes(256 * 1024, 1);
    Files.write(a.backing.resolve("existing.db"), existing);
    a.mount("--max-age", "0"); // nothing written back before the flush: the flush does it
    Path m = a.mountpoint;
    byte[] fresh = bytes(1 << 20, 2);
    writeSynced(m.resolve("new.db"), fresh, 0);
    byte[] patch = bytes(10_000, 3);
    writeSynced(m.resolve("existing.db"), patch, 100_001);
    byte[] patched = existing.clone();
    System.arraycopy(patch, 0, patched, 100_001, patch.length);
    byte[] config = bytes(3000, 4);
    writeSynced(m.resolve("config.tmp"), config, 0); // an atomic save: write, fsync, rename
    Files.move(m.resolve("config.tmp"), m.resolve("config"), StandardCopyOption.ATOMIC_MOVE);
    Files.createDirectories(m.resolve("sub"));
    byte[] nested = bytes(5000, 5);
    writeSynced(m.resolve("sub/f"), nested, 0);

    assertFalse(Arrays.equals(fresh, readOrEmpty(other.resolve("new.db")))
        && Arrays.equals(patched, readOrEmpty(other.resolve("existing.db"))),
        "precondition: the data is in A's cache only before the flush");

    WcfsProcess.Result f = WcfsProcess.run(300, "flush", m.toString());
    assertEquals(0, f.exitCode(), f.all() + a.log());
    assertAll("on the other machine right after `wcfs flush` on the first",
        () -> assertArrayEquals(fresh, Files.readAllBytes(other.resolve("new.db")), "new.db"),
        () -> assertArrayEquals(patched, Files.readAllBytes(other.resolve("existing.db")),
            "existing.db"),
        () -> assertArrayEquals(config, Files.readAllBytes(other.resolve("config")), "config"),
        () -> assertFalse(Files.exists(other.resolve("config.tmp")), "config.tmp renamed"),
        () -> assertArrayEquals(nested, Files.readAllBytes(other.resolve("sub/f")), "sub/f"));

    // Moving the database: unmount on the first machine, mount on the second.
    a.umount();
    WcfsProcess b = wcfs("HandB", 1, "handoff");
    b.mount();
    Path mb = b.mountpoint;
    assertAll("through the second machine's wcfs",
        () -> assertArrayEquals(fresh, Files.readAllBytes(mb.resolve("new.db")), "new.db"),
        () -> assertArrayEquals(patched, Files.readAllBytes(mb.resolve("existing.db")),
            "existing.db"),
        () -> assertArrayEquals(nested, Files.readAllBytes(mb.resolve("sub/f")), "sub/f"));
    byte[] fromB = bytes(70_000, 6);
    writeSynced(mb.resolve("new.db"), fromB, 4096);
    byte[] freshB = fresh.clone();
    System.arraycopy(fromB, 0, freshB, 4096, fromB.length);
    b.umount();
    assertArrayEquals(freshB, Files.readAllBytes(a.backing.resolve("new.db")),
        "the first machine sees what the second wrote once it unmounted");
  }

  @Test
  @DisplayName("kill -9, the volume remounted, the same cache mounts again and loses nothing;"
      + " a dead machine's claim is taken over only with --take-over, and its cache is fenced")
  void killNineRemountAndTakeOver() throws Exception {
    WcfsProcess a = wcfs("FailA", 0, "failover");
    a.mount("--lease", "3000", "--max-age", "0");
    byte[] first = bytes(512 * 1024, 7);
    writeSynced(a.mountpoint.resolve("a.db"), first, 0);
    a.kill9();
    volume.unmount(0); // the machine's GlusterFS client goes too, and comes back
    volume.mount(0);
    assertFalse(Arrays.equals(first, readOrEmpty(a.backing.resolve("a.db"))),
        "precondition: a.db was in the cache only when the daemon was killed");
    a.mount("--lease", "3000", "--max-age", "0"); // its own claim: back without --take-over
    assertArrayEquals(first, Files.readAllBytes(a.mountpoint.resolve("a.db")),
        "a.db after kill -9 and a GlusterFS remount" + a.log());
    byte[] late = bytes(300_000, 8);
    writeSynced(a.mountpoint.resolve("late.db"), late, 0);
    a.kill9(); // the first machine dies for good, with data in its cache

    WcfsProcess b = wcfs("FailB", 1, "failover");
    WcfsProcess.Result refused = tryMount(b);
    assertEquals(2, refused.exitCode(), "a dead machine's claim was taken without --take-over: "
        + refused.all());
    assertTrue(refused.err().contains("was claimed by the wcfs mount at " + a.mountpoint)
        && refused.err().contains("stopped without releasing it")
        && refused.err().contains("--take-over"), refused.err());

    WcfsProcess.Result took = tryMount(b, "--take-over");
    assertEquals(0, took.exitCode(), took.all() + b.log());
    assertTrue(took.err().contains("taking over " + b.backing + " from the wcfs mount at "
        + a.mountpoint) && took.err().contains("whatever that cache had not written back is"
        + " lost"), took.err());
    byte[] fromB = bytes(40_000, 9);
    writeSynced(b.mountpoint.resolve("b.db"), fromB, 0);

    // The first machine comes back: its wcfs is refused while the second holds the claim...
    WcfsProcess.Result back = tryMount(a, "--lease", "3000");
    assertEquals(2, back.exitCode(), back.all());
    assertTrue(back.err().contains("is claimed by the wcfs mount at " + b.mountpoint),
        back.err());
    b.umount();
    assertArrayEquals(fromB, Files.readAllBytes(a.backing.resolve("b.db")));
    // ...and after it released it too: its cache's data was given up by the take-over.
    WcfsProcess.Result stale = tryMount(a, "--lease", "3000");
    assertEquals(2, stale.exitCode(), "a cache whose data was given up wrote it back over the"
        + " newer files: " + stale.all());
    assertTrue(stale.err().contains("was given up by a take-over"), stale.err());
    assertArrayEquals(fromB, Files.readAllBytes(a.backing.resolve("b.db")));
  }

  private static byte[] readOrEmpty(Path p) throws IOException {
    return Files.exists(p) ? Files.readAllBytes(p) : new byte[0];
  }

  private static byte[] bytes(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static void writeSynced(Path p, byte[] b, long at) throws IOException {
    try (FileChannel c = FileChannel.open(p, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
      ByteBuffer buf = ByteBuffer.wrap(b);
      while (buf.hasRemaining()) {
        c.write(buf, at + buf.position());
      }
      c.force(true);
    }
  }
}
