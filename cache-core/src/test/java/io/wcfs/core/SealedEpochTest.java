package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A commit seals its epoch and lets writers go on into the next one while it waits for the
 * device. The sealed epoch must commit exactly what it held: a write during the commit goes
 * to the next epoch (a new slot, the file version's other copy only once the commit ended),
 * and a crash at any moment finds each epoch whole or absent. The memory here stops inside
 * the commit until the test lets it go.
 */
@Timeout(60)
class SealedEpochTest {
  private static final int BS = 512;

  @TempDir Path tmp;

  private final ExecutorService pool = Executors.newCachedThreadPool();
  private GatedMemory mem;
  private DirectoryBackingStore store;
  private WriteCache cache;

  /** A crash-simulating memory whose next commit, once armed, waits at a gate. */
  static final class GatedMemory implements CacheMemory {
    final CrashingMemory inner;
    volatile CountDownLatch entered;
    volatile CountDownLatch release;

    GatedMemory(CrashingMemory inner) {
      this.inner = inner;
    }

    void arm() {
      entered = new CountDownLatch(1);
      release = new CountDownLatch(1);
    }

    @Override
    public void commit() throws IOException {
      CountDownLatch e = entered;
      if (e != null) {
        entered = null;
        e.countDown();
        try {
          release.await();
        } catch (InterruptedException ie) {
          throw new java.io.InterruptedIOException();
        }
      }
      inner.commit();
    }

    @Override
    public boolean commitFlushesDevice() {
      return inner.commitFlushesDevice();
    }

    @Override
    public long size() {
      return inner.size();
    }

    @Override
    public void copyIn(long offset, long srcAddress, long length) {
      inner.copyIn(offset, srcAddress, length);
    }

    @Override
    public void assign(long offset, long value) {
      inner.assign(offset, value);
    }

    @Override
    public void flush(long offset, long length) {
      inner.flush(offset, length);
    }

    @Override
    public long readLong(long offset) {
      return inner.readLong(offset);
    }

    @Override
    public void copyOut(long offset, long dstAddress, long length) {
      inner.copyOut(offset, dstAddress, length);
    }

    @Override
    public String describe() {
      return "gated " + inner.describe();
    }

    @Override
    public void close() {}
  }

  @BeforeEach
  void setUp() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("backing"));
    Files.createFile(root.resolve("f"));
    Files.createFile(root.resolve("g"));
    store = new DirectoryBackingStore(root);
    CrashingMemory raw = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(raw, BS, store.identity());
    mem = new GatedMemory(raw);
    cache = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
  }

  @AfterEach
  void tearDown() throws Exception {
    if (mem.release != null) {
      mem.release.countDown();
    }
    pool.shutdownNow();
    cache.abandon();
    store.close();
  }

  private static byte[] bytes(int seed) {
    byte[] b = new byte[BS];
    new Random(seed).nextBytes(b);
    return b;
  }

  /** A power loss's image now, keeping a random half of the pending words. */
  private CrashingMemory lossImage(long seed) {
    Random r = new Random(seed);
    return mem.inner.powerLossImage(offset -> r.nextBoolean());
  }

  private WriteCache recover(CrashingMemory image, long boot) throws IOException {
    return WriteCache.openManual(image, store, CacheFixture.manualConfig(BS), boot);
  }

  @DisplayName("writes during a commit's device wait go to the next epoch: they do not wait,"
      + " and a power loss then finds the sealed epoch whole and none of them")
  @Test
  void writesDuringCommitGoToTheNextEpoch() throws Exception {
    byte[] before = new byte[0]; // f as the last commit left it
    byte[] gBefore = new byte[0];
    for (boolean disk : new boolean[] {true, false}) {
      mem.inner.flushesDevice(disk);
      byte[] f1 = bytes(disk ? 1 : 11);
      byte[] g1 = bytes(disk ? 2 : 12);
      byte[] f2 = bytes(disk ? 3 : 13);
      CacheFixture.write(cache, "f", 0, f1);
      mem.arm();
      CountDownLatch entered = mem.entered;
      Future<?> fsync = pool.submit(() -> {
        cache.commit();
        return null;
      });
      assertTrue(entered.await(10, TimeUnit.SECONDS), "the commit reached the device");
      // g's newest version is not in the sealed epoch: its write does not wait for the commit.
      CacheFixture.write(cache, "g", 0, g1);
      assertFalse(fsync.isDone(), "the commit is still waiting at the gate");
      // What a power loss finds now: f from the sealed epoch or not at all, never g.
      for (int seed = 0; seed < 16; seed++) {
        WriteCache r = recover(lossImage(seed), CacheFixture.nextBoot());
        try {
          byte[] f = CacheFixture.read(r, "f");
          assertTrue(java.util.Arrays.equals(before, f) || java.util.Arrays.equals(f1, f),
              "f torn");
          assertArrayEquals(gBefore, CacheFixture.read(r, "g"), "g's write was never fsync'd");
        } finally {
          r.abandon();
        }
      }
      // f's version is in the sealed epoch: its write waits for the commit to end.
      Future<?> writeF = pool.submit(() -> {
        CacheFixture.write(cache, "f", 0, f2);
        return null;
      });
      Thread.sleep(100);
      assertFalse(writeF.isDone(), "rewriting f's version waits for the sealed epoch's commit");
      mem.release.countDown();
      fsync.get(10, TimeUnit.SECONDS);
      writeF.get(10, TimeUnit.SECONDS);
      // The fsync returned: a power loss keeps f1 (f2 and g1 were not fsync'd yet).
      for (int seed = 0; seed < 16; seed++) {
        WriteCache r = recover(lossImage(100 + seed), CacheFixture.nextBoot());
        try {
          byte[] f = CacheFixture.read(r, "f");
          assertTrue(java.util.Arrays.equals(f1, f) || java.util.Arrays.equals(f2, f),
              (disk ? "disk" : "pmem") + ": the fsync'd f lost");
        } finally {
          r.abandon();
        }
      }
      cache.commit();
      WriteCache r = recover(lossImage(7), CacheFixture.nextBoot());
      try {
        assertArrayEquals(f2, CacheFixture.read(r, "f"));
        assertArrayEquals(g1, CacheFixture.read(r, "g"));
      } finally {
        r.abandon();
      }
      before = f2;
      gBefore = g1;
    }
  }

  @DisplayName("the daemon killed while a commit waits for the device and a write went to the"
      + " next epoch: same-boot recovery keeps both")
  @org.junit.jupiter.params.ParameterizedTest(name = "disk cache {0}")
  @org.junit.jupiter.params.provider.ValueSource(booleans = {true, false})
  void sameBootKeepsBothOpenEpochs(boolean disk) throws Exception {
    mem.inner.flushesDevice(disk); // pmem: the kill comes before seq_count is stored
    byte[] f1 = bytes(4);
    byte[] g1 = bytes(5);
    long boot = CacheFixture.nextBoot();
    cache.abandon();
    cache = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
    CacheFixture.write(cache, "f", 0, f1);
    mem.arm();
    CountDownLatch entered = mem.entered;
    Future<?> fsync = pool.submit(() -> {
      cache.commit();
      return null;
    });
    assertTrue(entered.await(10, TimeUnit.SECONDS), "the commit reached the device");
    CacheFixture.write(cache, "g", 0, g1);
    CrashingMemory killed = mem.inner.processCrash();
    WriteCache r = recover(killed, boot);
    try {
      assertArrayEquals(f1, CacheFixture.read(r, "f"), "the sealed epoch's write");
      assertArrayEquals(g1, CacheFixture.read(r, "g"), "the next epoch's write that returned");
    } finally {
      r.abandon();
    }
    assertFalse(fsync.isDone());
  }
}
