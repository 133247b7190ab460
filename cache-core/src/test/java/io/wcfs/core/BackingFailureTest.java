package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

@Timeout(60)
class BackingFailureTest {
  private static final int BS = 512;
  @TempDir Path tmp;

  @Test
  @DisplayName("writeback errors keep data cached, are counted and retried, lose nothing")
  void failingBackingStoreLosesNothing() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.createFile(root.resolve("f"));
    FailingBackingStore store = new FailingBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
    // The real writeback thread, cleaner mode: it tries to write back at once.
    WriteCache cache = WriteCache.open(mem, store,
        CacheFixture.manualConfig(BS).withCleaner(true));
    try {
      store.failing = true;
      byte[] data = new byte[10 * BS + 17];
      new Random(3).nextBytes(data);
      CacheFixture.write(cache, "f", 0, data);
      cache.commit();
      IOException e = assertThrows(IOException.class, () -> cache.flush(1500));
      assertTrue(e.getMessage().contains("still dirty"), e.getMessage());
      CacheStats stats = cache.stats();
      assertTrue(stats.writeback().errors() >= 1, "errors counted: " + stats);
      assertTrue(stats.writeback().lastError().contains("injected"),
          stats.writeback().lastError());
      assertEquals(11, stats.space().dirtyBlocks(), "blocks stay in the cache");
      assertArrayEquals(data, CacheFixture.read(cache, "f"), "reads still see the data");
      assertEquals(0, Files.size(root.resolve("f")));
      store.failing = false;
      cache.flush(30_000);
      assertArrayEquals(data, Files.readAllBytes(root.resolve("f")));
      assertEquals(0, cache.stats().space().dirtyBlocks());
    } finally {
      store.failing = false;
      cache.close();
    }
  }

  @Test
  @DisplayName("a full cache with a stuck backing store makes writers wait, visibly, not fail")
  void fullCacheBlocksWriters() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    Files.createFile(root.resolve("f"));
    FailingBackingStore store = new FailingBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(16, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.open(mem, store, CacheFixture.manualConfig(BS));
    try {
      store.failing = true;
      byte[] data = new byte[40 * BS];
      new Random(4).nextBytes(data);
      Thread writer = new Thread(() -> {
        try {
          CacheFixture.write(cache, "f", 0, data);
        } catch (IOException e) {
          throw new RuntimeException(e);
        }
      });
      writer.start();
      long deadline = System.currentTimeMillis() + 10_000;
      while (cache.stats().writeback().writesBlockedOnFreelist() == 0
          && System.currentTimeMillis() < deadline) {
        Thread.sleep(20);
      }
      assertTrue(cache.stats().writeback().writesBlockedOnFreelist() > 0,
          "writer waits for free blocks");
      assertTrue(writer.isAlive(), "writer still waiting, not failed");
      store.failing = false;
      writer.join(30_000);
      cache.flush(30_000);
      assertArrayEquals(data, Files.readAllBytes(root.resolve("f")));
    } finally {
      store.failing = false;
      cache.close();
    }
  }

  /** Runs a command; its exit code (the tests below run as root, which they need). */
  private static int run(String... cmd) throws IOException, InterruptedException {
    return new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.DISCARD).start().waitFor();
  }

  /**
   * Ways a backing file ends up readable but not writable for the daemon, each with the words
   * the error must use for its cause and its fix. Mode 0444 with a daemon that is not root is
   * the common one; these tests run as root, so the cache runs in threads without the
   * capability that lets root ignore mode bits.
   */
  enum ReadOnly {
    MODE_0444("permission", "chmod"),
    IMMUTABLE("immutable", "chattr -i"),
    READ_ONLY_BIND("read-only", "remount");

    final String cause;
    final String fix;

    ReadOnly(String cause, String fix) {
      this.cause = cause;
      this.fix = fix;
    }
  }

  @DisplayName("a backing file that opens only read-only: reads work, data stays cached, the"
      + " error names the file, the cause and the fix, once, and writeback resumes after the fix")
  @ParameterizedTest(name = "{0}")
  @EnumSource(ReadOnly.class)
  void readOnlyBackingFile(ReadOnly how) throws Exception {
    Path real = Files.createDirectories(tmp.resolve("real"));
    byte[] before = new byte[3 * BS];
    new Random(5).nextBytes(before);
    Files.write(real.resolve("ro"), before);
    Path root = real;
    Runnable undo;
    ThreadCapabilities notRoot = null;
    if (how == ReadOnly.MODE_0444) {
      Files.setPosixFilePermissions(real.resolve("ro"),
          java.nio.file.attribute.PosixFilePermissions.fromString("r--r--r--"));
      notRoot = ThreadCapabilities.withoutDacOverride();
      Assumptions.assumeTrue(notRoot != null, "needs root, to drop CAP_DAC_OVERRIDE");
      undo = () -> {
        try {
          Files.setPosixFilePermissions(real.resolve("ro"),
              java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
        } catch (IOException e) {
          throw new RuntimeException(e);
        }
      };
    } else if (how == ReadOnly.IMMUTABLE) {
      Assumptions.assumeTrue(run("chattr", "+i", real.resolve("ro").toString()) == 0,
          "chattr +i needs root and a filesystem with immutable files");
      undo = () -> {
        try {
          run("chattr", "-i", real.resolve("ro").toString());
        } catch (IOException | InterruptedException e) {
          throw new RuntimeException(e);
        }
      };
    } else {
      root = Files.createDirectories(tmp.resolve("bind"));
      Path bind = root;
      Assumptions.assumeTrue(run("mount", "--bind", real.toString(), bind.toString()) == 0,
          "bind mounts need root");
      if (run("mount", "-o", "remount,bind,ro", bind.toString()) != 0) {
        run("umount", bind.toString());
        Assumptions.abort("cannot make the bind mount read-only here");
      }
      undo = () -> {
        try {
          run("mount", "-o", "remount,bind,rw", bind.toString());
        } catch (IOException | InterruptedException e) {
          throw new RuntimeException(e);
        }
      };
    }
    Path ro = root.resolve("ro"); // the name wcfs knows the file by
    PrintStream stderr = System.err;
    ByteArrayOutputStream log = new ByteArrayOutputStream();
    boolean undone = false;
    DirectoryBackingStore store = null;
    try {
      store = new DirectoryBackingStore(root);
      CrashingMemory mem = CacheFixture.memoryFor(64, BS);
      CacheLayout.format(mem, BS, store.identity());
      WriteCache cache = WriteCache.open(mem, store,
          CacheFixture.manualConfig(BS).withCleaner(true));
      boolean drained = false;
      try {
        // A partial block: its other bytes are read from the backing file first.
        byte[] data = new byte[BS + 100];
        new Random(6).nextBytes(data);
        System.setErr(new PrintStream(log, true, StandardCharsets.UTF_8));
        CacheFixture.write(cache, "ro", 200, data);
        cache.commit();
        IOException e = assertThrows(IOException.class, () -> cache.flush(1500));
        System.setErr(stderr);
        byte[] expected = CacheFixture.apply(before, 200, data);
        assertArrayEquals(expected, CacheFixture.read(cache, "ro"), "reads see the data");
        CacheStats stats = cache.stats();
        assertEquals(2, stats.space().dirtyBlocks(), "blocks stay in the cache");
        String err = stats.writeback().lastError();
        for (String word : List.of(ro.toString(), how.cause, how.fix)) {
          assertTrue(err.contains(word), "status names '" + word + "': " + err);
          assertTrue(e.getMessage().contains(word), "flush names '" + word + "': " + e);
        }
        assertTrue(stats.writeback().errors() <= 6,
            "retried with backoff, not in a loop: " + stats.writeback().errors() + " in 1.5 s");
        List<String> lines = Arrays.stream(log.toString(StandardCharsets.UTF_8).split("\n"))
            .filter(l -> l.contains(ro.toString())).toList();
        assertEquals(1, lines.size(), "reported once in the log: " + lines);
        assertArrayEquals(before, Files.readAllBytes(real.resolve("ro")));
        undo.run();
        undone = true;
        cache.flush(30_000);
        drained = true;
        assertArrayEquals(expected, Files.readAllBytes(real.resolve("ro")));
        assertEquals(0, cache.stats().space().dirtyBlocks());
      } finally {
        System.setErr(stderr);
        if (drained) {
          cache.close();
        } else {
          cache.abandon(); // close would retry the drain until the test's timeout
        }
      }
    } finally {
      if (store != null) {
        store.close(); // its descriptor of the root would keep the bind mount busy
      }
      if (notRoot != null) {
        notRoot.close();
      }
      if (!undone) {
        undo.run();
      }
      if (how == ReadOnly.READ_ONLY_BIND) {
        run("umount", root.toString());
      }
    }
  }
}
