package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Several threads writing and committing at once (fio's fsync jobs, a database's connections),
 * crashed anywhere: the commits group, and each waits for the one before it, whose memory
 * commit pauses as a device flush does while the other threads go on writing. After each
 * crash and recovery, every write whose commit returned holds (or a later write of its
 * block), and no block is torn, invented, or taken from another block or file. It found a
 * commit that returned success after the commit it had waited for failed with its writes.
 */
@Timeout(300)
class ConcurrentCommitCrashTest {
  private static final int BS = 512;
  private static final int THREADS = 4;
  private static final int BLOCKS = 6; // per file
  private static final int CRASHES = 300;
  @TempDir Path tmp;

  /** Block {@code b} of thread {@code t}'s file at version {@code v}: v first, then noise. */
  private static byte[] content(int t, int b, int v) {
    byte[] out = new byte[BS];
    Random r = new Random(((long) t << 40) ^ ((long) b << 32) ^ v);
    r.nextBytes(out);
    for (int i = 0; i < 4; i++) {
      out[i] = (byte) (v >>> (8 * i));
    }
    return out;
  }

  /** The version a block holds (0: never written), or -1 if it is no version of that block. */
  private static int versionOf(byte[] block, int t, int b) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
      v |= (block[i] & 0xFF) << (8 * i);
    }
    if (v == 0) {
      return java.util.Arrays.equals(block, new byte[BS]) ? 0 : -1;
    }
    return java.util.Arrays.equals(block, content(t, b, v)) ? v : -1;
  }

  @ParameterizedTest(name = "cache on a disk: {0}")
  @ValueSource(booleans = {true, false}) // commit records; pmem's two-step commit
  @DisplayName("commits of four threads crashed anywhere: every returned fsync holds")
  void concurrentCommitsSurviveCrashes(boolean disk) throws Exception {
    Random rnd = new Random(42);
    Path root = Files.createDirectories(tmp.resolve("backing"));
    for (int t = 0; t < THREADS; t++) {
      Files.write(root.resolve("f" + t), new byte[BLOCKS * BS]);
    }
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(128, BS).commitPause(50_000).flushesDevice(disk);
    CacheConfig cfg = CacheFixture.manualConfig(BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
    int[][] floor = new int[THREADS][BLOCKS]; // what must hold: returned commits, or recovered
    int[] next = new int[THREADS]; // each thread's last version, over all rounds
    long overlapped = 0;
    java.util.concurrent.atomic.AtomicLong returned = new java.util.concurrent.atomic.AtomicLong();
    for (int crash = 0; crash < CRASHES; crash++) {
      String where = "crash " + crash;
      AtomicIntegerArray acked = new AtomicIntegerArray(THREADS * BLOCKS);
      for (int t = 0; t < THREADS; t++) {
        for (int b = 0; b < BLOCKS; b++) {
          acked.set(t * BLOCKS + b, floor[t][b]);
        }
      }
      mem.crashAfter(50 + rnd.nextInt(3000));
      List<Thread> threads = new ArrayList<>();
      WriteCache c = cache;
      for (int t = 0; t < THREADS; t++) {
        int me = t;
        int first = next[t];
        long seed = rnd.nextLong();
        threads.add(new Thread(() -> {
          Random r = new Random(seed);
          int v = first;
          try (NativeBuffer nb = new NativeBuffer(BS)) {
            WriteCache.OpenFile h = c.open("f" + me);
            for (int i = 0; i < 400; i++) {
              int b = r.nextInt(BLOCKS);
              nb.put(0, content(me, b, ++v), 0, BS);
              c.write(h, (long) b * BS, nb.address(), BS);
              if (r.nextInt(3) != 0) { // most writes are fsync'd, as fio's are
                c.commit();
                acked.set(me * BLOCKS + b, v); // the thread's only writer of b: monotonic
                returned.incrementAndGet();
              }
            }
          } catch (CrashingMemory.SimulatedCrash | IOException e) {
            // the crash: this thread's last write and commit may or may not hold
          } finally {
            synchronized (next) {
              next[me] = v + 1; // versions never repeat across rounds
            }
          }
        }, "committer-" + t));
      }
      threads.forEach(Thread::start);
      for (Thread th : threads) {
        th.join();
      }
      overlapped += mem.startedDuringCommit(); // epochs staged while another committed
      CrashingMemory after = mem.crash(rnd);
      cache.abandon();
      mem = after.commitPause(50_000).flushesDevice(disk);
      try {
        cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
      } catch (IOException e) {
        throw new AssertionError(where + ": recovery failed", e);
      }
      for (int t = 0; t < THREADS; t++) {
        WriteCache.OpenFile h = cache.open("f" + t);
        try (NativeBuffer nb = new NativeBuffer(BLOCKS * BS)) {
          int n = cache.read(h, 0, nb.address(), BLOCKS * BS);
          byte[] all = new byte[BLOCKS * BS];
          nb.get(0, all, 0, n);
          for (int b = 0; b < BLOCKS; b++) {
            byte[] block = java.util.Arrays.copyOfRange(all, b * BS, (b + 1) * BS);
            int v = versionOf(block, t, b);
            int must = acked.get(t * BLOCKS + b);
            assertTrue(v >= 0, where + ": file " + t + " block " + b + " is torn or foreign");
            assertTrue(v >= must, where + ": file " + t + " block " + b + " lost a returned"
                + " commit: holds version " + v + ", version " + must + " was committed");
            assertTrue(v <= next[t], where + ": file " + t + " block " + b + " holds version "
                + v + ", never written");
            floor[t][b] = v;
          }
        } finally {
          cache.close(h);
        }
      }
      if (rnd.nextInt(10) == 0) {
        cache.flush(60_000); // now and then the backing files take it all
      }
    }
    cache.close();
    assertTrue(returned.get() > 10L * CRASHES, "commits that returned: " + returned.get());
    if (disk) { // a commit waiting for another's device flush starts its data meanwhile
      assertTrue(overlapped > CRASHES, "data started during another commit: " + overlapped);
    }
  }
}
