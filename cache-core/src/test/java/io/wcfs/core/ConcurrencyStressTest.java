package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.wcfs.nativ.NativeBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * 8 writer threads and 2 readers on two shared files with a small cache and the real writeback
 * thread. Each writer owns interleaved 48-byte stripes, so blocks are shared between threads but
 * bytes are not: the final content is known exactly, and every stripe a reader sees must be one
 * whole value its owner wrote.
 */
@Timeout(120)
class ConcurrencyStressTest {
  private static final int BS = 512;
  private static final int STRIPE = 48;
  private static final int THREADS = 8;
  private static final int FILE_SIZE = 96 * BS;
  @TempDir Path tmp;

  private static void fillStripe(byte[] buf, int owner, int version) {
    for (int i = 0; i < STRIPE; i++) {
      buf[i] = (byte) (owner * 31 + version * 7 + i);
    }
  }

  @Test
  @DisplayName("many threads, overlapping blocks, writeback running: model matches")
  void concurrentWritersAndReaders() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("b"));
    String[] files = {"x", "y"};
    for (String f : files) {
      Files.write(root.resolve(f), new byte[FILE_SIZE]);
    }
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(48, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.open(mem, store, CacheConfig.DEFAULTS.withBlockSize(BS)
        .withWritebackJobs(8).withAutocommit(16, 5));
    int stripes = FILE_SIZE / STRIPE;
    int[][][] last = new int[files.length][stripes][1]; // last version written per stripe
    ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
    List<Thread> threads = new ArrayList<>();
    for (int t = 0; t < THREADS; t++) {
      final int owner = t;
      threads.add(new Thread(() -> {
        Random rnd = new Random(owner);
        byte[] buf = new byte[STRIPE];
        try (NativeBuffer nb = new NativeBuffer(STRIPE)) {
          for (int i = 0; i < 1500; i++) {
            int fi = rnd.nextInt(files.length);
            int stripe = rnd.nextInt(stripes / THREADS) * THREADS + owner;
            int version = i + 1;
            fillStripe(buf, owner, version);
            nb.put(0, buf, 0, STRIPE);
            WriteCache.OpenFile h = cache.open(files[fi]);
            try {
              cache.write(h, (long) stripe * STRIPE, nb.address(), STRIPE);
            } finally {
              cache.close(h);
            }
            last[fi][stripe][0] = version;
            if (rnd.nextInt(20) == 0) {
              cache.commit();
            }
          }
        } catch (Throwable e) {
          errors.add(e);
        }
      }));
    }
    for (int r = 0; r < 2; r++) {
      final int seed = 100 + r;
      threads.add(new Thread(() -> {
        Random rnd = new Random(seed);
        try (NativeBuffer nb = new NativeBuffer(FILE_SIZE)) {
          byte[] all = new byte[FILE_SIZE];
          byte[] expect = new byte[STRIPE];
          for (int i = 0; i < 150; i++) {
            String f = files[rnd.nextInt(files.length)];
            WriteCache.OpenFile h = cache.open(f);
            try {
              cache.read(h, 0, nb.address(), FILE_SIZE);
            } finally {
              cache.close(h);
            }
            nb.get(0, all, 0, FILE_SIZE);
            for (int s = 0; s < stripes; s++) {
              if (all[s * STRIPE] == 0 && all[s * STRIPE + 1] == 0) {
                continue; // never written
              }
              int owner = s % THREADS;
              int version = Math.floorMod((all[s * STRIPE] & 0xFF) - owner * 31, 256) / 7;
              boolean ok = false;
              for (int v = version; v < 1501 && !ok; v += 256) {
                fillStripe(expect, owner, v);
                ok = java.util.Arrays.equals(expect, 0, STRIPE, all, s * STRIPE, s * STRIPE + STRIPE);
              }
              for (int v = 1; v < 1501 && !ok; v++) {
                fillStripe(expect, owner, v);
                ok = java.util.Arrays.equals(expect, 0, STRIPE, all, s * STRIPE, s * STRIPE + STRIPE);
              }
              if (!ok) {
                throw new AssertionError(f + " stripe " + s + " is torn or foreign");
              }
            }
          }
        } catch (Throwable e) {
          errors.add(e);
        }
      }));
    }
    threads.forEach(Thread::start);
    for (Thread t : threads) {
      t.join();
    }
    if (!errors.isEmpty()) {
      throw new AssertionError("worker failed", errors.peek());
    }
    cache.flush(60_000);
    for (int fi = 0; fi < files.length; fi++) {
      byte[] expected = new byte[FILE_SIZE];
      byte[] stripe = new byte[STRIPE];
      for (int s = 0; s < stripes; s++) {
        if (last[fi][s][0] > 0) {
          fillStripe(stripe, s % THREADS, last[fi][s][0]);
          System.arraycopy(stripe, 0, expected, s * STRIPE, STRIPE);
        }
      }
      assertArrayEquals(expected, CacheFixture.read(cache, files[fi]), files[fi] + " via cache");
      assertArrayEquals(expected, Files.readAllBytes(root.resolve(files[fi])), files[fi]);
    }
    assertEquals(0, cache.stats().space().dirtyBlocks());
    cache.close();
  }

  @Test
  @DisplayName("writes and truncates while writeback copies the same file: backing matches")
  void truncatesRaceWriteback() throws Exception {
    // Writeback copies without the file's lock; a truncate (or a newer write) landing between
    // its snapshot and its pwrite must still win on disk.
    Path root = Files.createDirectories(tmp.resolve("t"));
    Files.write(root.resolve("f"), new byte[0]);
    FailingBackingStore store = new FailingBackingStore(root);
    store.slowWriteMillis = 1;
    CrashingMemory mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.open(mem, store, CacheConfig.DEFAULTS.withBlockSize(BS)
        .withWritebackJobs(4).withWatermarks(10, 0).withAutocommit(8, 1));
    int max = 40 * BS;
    byte[] model = new byte[max];
    int size = 0;
    Random rnd = new Random(7);
    try (NativeBuffer nb = new NativeBuffer(max)) {
      WriteCache.OpenFile h = cache.open("f");
      for (int i = 0; i < 6000; i++) {
        if (rnd.nextInt(8) == 0) {
          int newSize = rnd.nextInt(max);
          if (newSize > size) {
            java.util.Arrays.fill(model, size, newSize, (byte) 0);
          }
          size = newSize;
          cache.truncate(h, size);
        } else {
          int off = rnd.nextInt(max - 1);
          int len = 1 + rnd.nextInt(Math.min(3 * BS, max - off));
          if (off > size) {
            java.util.Arrays.fill(model, size, off, (byte) 0);
          }
          for (int k = 0; k < len; k++) {
            model[off + k] = (byte) (i * 13 + k);
          }
          nb.put(0, model, off, len);
          cache.write(h, off, nb.address(), len);
          size = Math.max(size, off + len);
        }
        if (rnd.nextInt(4) == 0) {
          cache.commit();
        }
      }
      cache.close(h);
    }
    cache.flush(60_000);
    byte[] expected = java.util.Arrays.copyOf(model, size);
    assertArrayEquals(expected, CacheFixture.read(cache, "f"), "via cache");
    assertArrayEquals(expected, Files.readAllBytes(root.resolve("f")), "backing file");
    cache.close();
  }

  @Test
  @DisplayName("an open whose file writeback drops after the overlay answered: the file the engine knows")
  void openRacesTheApplier() throws Exception {
    // The overlay is read without a lock; the applier may retire the name and writeback drop
    // the file from memory before the open takes its handle. A handle on the dropped file wrote
    // where no getattr looked: RandomOpsTest through the mount saw a file's size shown short.
    raceTheApplier(false);
  }

  @Test
  @DisplayName("a rename whose file writeback drops after the overlay answered: the file the engine knows")
  void renameRacesTheApplier() throws Exception {
    // The same for the file a rename moves: the record and the overlay would name a file the
    // engine no longer knows by its backing file, and the name's next getattr misses its writes.
    raceTheApplier(true);
  }

  private void raceTheApplier(boolean renameInRace) throws Exception {
    Path root = Files.createDirectories(tmp.resolve("o"));
    Files.write(root.resolve("a"), new byte[] {1});
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.open(mem, store, CacheConfig.DEFAULTS.withBlockSize(BS)
        .withWritebackJobs(1).withAutocommit(1_000_000, 60_000));
    try (NativeBuffer nb = new NativeBuffer(100)) {
      cache.rename("a", "b"); // journaled: the overlay shows "b"
      cache.commit();
      java.util.concurrent.atomic.AtomicBoolean raced = new java.util.concurrent.atomic.AtomicBoolean();
      cache.afterOverlayRead(() -> {
        cache.afterOverlayRead(() -> { });
        raced.set(true);
        try {
          cache.settle("b"); // applied: the name retired, the idle file dropped
        } catch (java.io.IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
      });
      String name = "b";
      if (renameInRace) {
        cache.rename("b", "c");
        name = "c";
      }
      WriteCache.OpenFile h = cache.open(name);
      assertEquals(true, raced.get(), "the overlay was read before the record was applied");
      nb.put(0, new byte[100], 0, 100);
      cache.write(h, 10, nb.address(), 100);
      cache.close(h);
      assertEquals(110, shownSize(cache, store, name), "size the mount shows");
      cache.settle(name);
      assertEquals(110, shownSize(cache, store, name), "size the mount shows, record applied");
      cache.commit();
      cache.flush(60_000);
      assertEquals(110, Files.size(root.resolve(name)), "backing file");
      assertEquals(0, cache.stats().journal().strayFiles(), "files the overlay showed, dropped");
    } finally {
      cache.close();
    }
  }

  /**
   * The size the mount shows at {@code path}, as ShownAttributes finds it: the overlay's file,
   * else the backing file with the engine's size for it by (st_dev, st_ino), else its own.
   */
  private static long shownSize(WriteCache cache, BackingStore store, String path)
      throws java.io.IOException {
    Long overlay = cache.withShown(path, s -> s.size());
    if (overlay != null) {
      return overlay;
    }
    BackingStore.Stat st = store.stat(path);
    long cached = cache.cachedSize(st.dev(), st.ino());
    return cached >= 0 ? cached : st.size();
  }
}
