package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Commit records (format version 3): on a cache whose commits are device flushes an epoch
 * commits with one memory commit, its record listing what it stored with checksums. A crash
 * inside that commit keeps any subset of its stores; the epoch then counts whole or not at
 * all. And nothing a record lists is freed before SeqCount passes its epoch.
 */
class CommitRecordTest {
  private static final int BS = 512;

  @TempDir Path tmp;

  private static byte[] bytes(int seed, int n) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private WriteCache mount(CrashingMemory mem, DirectoryBackingStore store) throws Exception {
    return WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
  }

  @DisplayName("an fsync of a few blocks costs one memory commit on a disk cache, two on pmem")
  @Test
  void oneCommitPerFsync() throws Exception {
    for (boolean disk : new boolean[] {true, false}) {
      Path root = Files.createDirectories(tmp.resolve("count-" + disk));
      Files.createFile(root.resolve("f"));
      DirectoryBackingStore store = new DirectoryBackingStore(root);
      CrashingMemory mem = CacheFixture.memoryFor(64, BS).flushesDevice(disk);
      CacheLayout.format(mem, BS, store.identity());
      WriteCache cache = mount(mem, store);
      try {
        for (int i = 0; i < 5; i++) {
          CacheFixture.write(cache, "f", (long) i * BS, bytes(i, 3 * BS));
          long before = mem.commits();
          cache.commit();
          assertEquals(disk ? 1 : 2, mem.commits() - before,
              (disk ? "disk" : "pmem") + " cache, fsync " + i + ": memory commits");
        }
      } finally {
        cache.abandon();
        store.close();
      }
    }
  }

  @DisplayName("a version 2 cache (no commit records) mounts, commits in two steps, and keeps"
      + " what it committed across a crash")
  @Test
  void versionTwoCacheCommitsInTwoSteps() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("v2"));
    Files.createFile(root.resolve("f"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = new CrashingMemory(
        (int) CacheLayout.Geometry.of(CacheLayout.VERSION_NO_COMMIT_RECORDS, 64, BS).fileSize());
    CacheLayout.format(mem, BS, store.identity(), CacheLayout.VERSION_NO_COMMIT_RECORDS);
    WriteCache cache = mount(mem, store);
    byte[] data = bytes(9, 3 * BS);
    try {
      CacheFixture.write(cache, "f", 0, data);
      long before = mem.commits();
      cache.commit();
      assertEquals(2, mem.commits() - before, "a version 2 cache has no commit records");
      WriteCache recovered = mount(mem.crash(new Random(1)), store);
      try {
        assertArrayEquals(data, CacheFixture.read(recovered, "f"));
        assertEquals(CacheLayout.VERSION_NO_COMMIT_RECORDS,
            CacheLayout.open(mem, null).version(), "still version 2");
      } finally {
        recovered.abandon();
      }
    } finally {
      cache.abandon();
      store.close();
    }
  }

  @DisplayName("a crash anywhere in a one-flush commit, any subset of its stores kept: both"
      + " files old or both new, never a mix; an fsync that returned always survives")
  @Test
  void tornCommitCountsWholeOrNot() throws Exception {
    byte[] oldA = bytes(1, 2 * BS);
    byte[] oldB = bytes(2, BS);
    byte[] newA = bytes(3, 2 * BS);
    byte[] newB = bytes(4, BS);
    int tornChecked = 0;
    for (int n = 0; ; n++) {
      Path root = Files.createDirectories(tmp.resolve("torn" + n));
      Files.createFile(root.resolve("a"));
      Files.createFile(root.resolve("b"));
      DirectoryBackingStore store = new DirectoryBackingStore(root);
      CrashingMemory mem = CacheFixture.memoryFor(64, BS);
      CacheLayout.format(mem, BS, store.identity());
      WriteCache cache = mount(mem, store);
      CacheFixture.write(cache, "a", 0, oldA);
      CacheFixture.write(cache, "b", 0, oldB);
      cache.commit();
      CacheFixture.write(cache, "a", 0, newA);
      CacheFixture.write(cache, "b", 0, newB);
      mem.crashAfter(n);
      boolean returned = false;
      try {
        cache.commit();
        returned = true;
      } catch (CrashingMemory.SimulatedCrash | CacheErrorException e) {
        // crashed inside the commit
      }
      for (int seed = 0; seed < 8; seed++) {
        Random r = new Random(seed * 31L + n);
        CrashingMemory after = mem.crash(off -> r.nextBoolean());
        WriteCache recovered = mount(after, store);
        try {
          byte[] a = CacheFixture.read(recovered, "a");
          byte[] b = CacheFixture.read(recovered, "b");
          boolean isNew = Arrays.equals(a, newA);
          if (returned) {
            assertTrue(isNew, "the fsync returned, yet a crash lost file a");
          }
          assertArrayEquals(isNew ? newA : oldA, a, "crash at op " + n + ": file a torn");
          assertArrayEquals(isNew ? newB : oldB, b,
              "crash at op " + n + ": file b from another epoch than file a");
        } finally {
          recovered.abandon();
        }
      }
      cache.abandon();
      store.close();
      if (returned) {
        assertTrue(tornChecked > 0, "no crash point inside the commit");
        return;
      }
      tornChecked++;
    }
  }

  @DisplayName("writeback right after a one-flush commit, crash anywhere in it: what the commit"
      + " record proved still counts (its items are not freed before SeqCount passes it)")
  @Test
  void writebackKeepsTheProofWhole() throws Exception {
    byte[] oldA = bytes(5, BS);
    byte[] oldB = bytes(6, BS);
    byte[] newA = bytes(7, BS);
    byte[] newB = bytes(8, BS);
    for (int n = 0; ; n++) {
      Path root = Files.createDirectories(tmp.resolve("wb" + n));
      Files.write(root.resolve("a"), oldA);
      Files.write(root.resolve("b"), oldB);
      DirectoryBackingStore store = new DirectoryBackingStore(root);
      CrashingMemory mem = CacheFixture.memoryFor(64, BS);
      CacheLayout.format(mem, BS, store.identity());
      WriteCache cache = mount(mem, store);
      CacheFixture.write(cache, "a", 0, newA);
      CacheFixture.write(cache, "b", 0, newB);
      cache.commit(); // one flush: SeqCount still below this epoch, its record proves it
      mem.crashAfter(n);
      try {
        cache.writebackStep();
      } catch (CrashingMemory.SimulatedCrash | CacheErrorException e) {
        // crashed inside writeback
      }
      boolean finished = !mem.hasCrashed();
      for (int seed = 0; seed < 8; seed++) {
        Random r = new Random(seed * 17L + n);
        CrashingMemory after = mem.crash(off -> r.nextBoolean());
        WriteCache recovered = mount(after, store);
        try {
          assertArrayEquals(newA, CacheFixture.read(recovered, "a"),
              "crash at op " + n + " of writeback: fsync'd data of a lost; backing holds "
                  + (Arrays.equals(Files.readAllBytes(root.resolve("a")), newA) ? "new" : "old"));
          assertArrayEquals(newB, CacheFixture.read(recovered, "b"),
              "crash at op " + n + " of writeback: fsync'd data of b lost");
        } finally {
          recovered.abandon();
        }
      }
      cache.abandon();
      store.close();
      if (finished) {
        return;
      }
    }
  }
}
