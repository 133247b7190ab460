package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A commit frees the old versions of the blocks it replaced without a device flush of its own
 * (the next memory commit makes those frees durable). Writeback must not let the free of the
 * new version reach the medium before the free of the old one: a crash keeping the first and
 * not the second would bring the old version back. Crashes at every memory operation of a
 * writeback batch, keeping every pending store except the old version's free.
 */
class SupersededFreeCrashTest {
  private static final int BS = 512;

  @TempDir Path tmp;

  @DisplayName("writeback after an overwrite, crash anywhere, the old version's free lost:"
      + " the new data survives")
  @Test
  void oldVersionNeverComesBack() throws Exception {
    byte[] oldData = new byte[BS];
    byte[] newData = new byte[BS];
    new Random(1).nextBytes(oldData);
    new Random(2).nextBytes(newData);
    boolean crashedInside = false;
    for (int n = 0; n < 100; n++) {
      Path root = Files.createDirectories(tmp.resolve("backing" + n));
      Files.createFile(root.resolve("f"));
      DirectoryBackingStore store = new DirectoryBackingStore(root);
      CrashingMemory mem = CacheFixture.memoryFor(16, BS);
      CacheConfig cfg = CacheFixture.manualConfig(BS);
      CacheLayout.format(mem, BS, store.identity());
      WriteCache cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
      CacheLayout layout = CacheLayout.open(mem, null);
      CacheFixture.write(cache, "f", 0, oldData);
      cache.commit();
      long oldSlot = -1;
      for (long s = 0; s < layout.geometry().nBlocks(); s++) {
        if (layout.entrySeq(s) != CacheLayout.FREE) {
          oldSlot = s;
        }
      }
      assertTrue(oldSlot >= 0);
      CacheFixture.write(cache, "f", 0, newData); // copy-on-write: a new slot
      cache.commit(); // the old slot's free is stored, maybe not durable
      mem.crashAfter(n);
      try {
        cache.writebackStep();
      } catch (CrashingMemory.SimulatedCrash | CacheErrorException e) {
        crashedInside = true;
      }
      if (!mem.hasCrashed()) {
        cache.abandon();
        assertTrue(crashedInside, "no crash point inside writeback");
        return; // every operation of the batch has been a crash point
      }
      long oldEntry = layout.entryOffset(oldSlot);
      CrashingMemory after = mem.crash(off -> off < oldEntry || off >= oldEntry + 16);
      cache.abandon();
      // A power loss: a new boot, only what was committed counts.
      WriteCache recovered = WriteCache.openManual(after, store, cfg, CacheFixture.nextBoot());
      assertArrayEquals(newData, CacheFixture.read(recovered, "f"),
          "crash at operation " + n + " of writeback: the overwritten version came back");
      recovered.abandon();
    }
  }

  @DisplayName("a range zeroed in the backing file drops its cached blocks durably before the"
      + " call returns: a crash right after it does not bring them back")
  @Test
  void droppedBlocksStayDropped() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("backing-drop"));
    Files.createFile(root.resolve("f"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(32, BS);
    CacheConfig cfg = CacheFixture.manualConfig(BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
    byte[] data = new byte[16 * BS];
    new Random(3).nextBytes(data);
    CacheFixture.write(cache, "f", 0, data);
    cache.commit();
    // Longer than a write chunk: zeroed in the backing file, the cached blocks dropped.
    WriteCache.OpenFile h = cache.open("f");
    cache.zeroRange(h, 0, data.length, true);
    cache.close(h);
    // A power loss right after the call returned: nothing pending survives.
    CrashingMemory after = mem.crash(off -> false);
    cache.abandon();
    WriteCache recovered = WriteCache.openManual(after, store, cfg, CacheFixture.nextBoot());
    assertArrayEquals(new byte[data.length], CacheFixture.read(recovered, "f"),
        "the zeroed range's old cached data came back");
    recovered.abandon();
  }
}
