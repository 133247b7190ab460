package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * WriteCacheCrashTest seed 10, crash 7, reduced: b is truncated (the truncate commits on its
 * own), then renamed over a and a new b is created, none of it committed; the power goes.
 * Recovery must show the namespace of the last commit: a with its own data, b with the
 * truncate's size (566, not the 283 of the last explicit commit). The engine gets this right;
 * the random test's model got it wrong (it overwrote the states of b's model file while it
 * tried a later namespace, where that file is named a).
 */
class UncommittedRenameCrashTest {
  private static final int BS = 512;

  @TempDir Path tmp;

  @DisplayName("truncate (committed by itself), rename over another file and create, power"
      + " loss: the namespace of the last commit, with the truncate's size")
  @Test
  void uncommittedRenameLeavesCommittedTruncate() throws Exception {
    byte[] aData = new byte[283];
    byte[] bData = new byte[274];
    new Random(1).nextBytes(aData);
    new Random(2).nextBytes(bData);
    for (int seed = 0; seed < 20; seed++) {
      Path root = Files.createDirectories(tmp.resolve("backing" + seed));
      DirectoryBackingStore store = new DirectoryBackingStore(root);
      CrashingMemory mem = CacheFixture.memoryFor(40, BS);
      CacheConfig cfg = CacheFixture.manualConfig(BS);
      CacheLayout.format(mem, BS, store.identity());
      WriteCache cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
      CacheFixture.create(cache, "a");
      CacheFixture.create(cache, "b");
      CacheFixture.write(cache, "a", 0, aData);
      CacheFixture.write(cache, "b", 0, bData);
      cache.commit();
      cache.truncate("b", 566); // commits by itself
      cache.rename("b", "a"); // not committed
      WriteCache.OpenFile h = cache.open("a");
      cache.zeroRange(h, 0, 100, true); // short: stored as blocks, not committed
      cache.close(h);
      CacheFixture.create(cache, "b"); // not committed
      CrashingMemory after = mem.crash(new Random(seed));
      cache.abandon();
      WriteCache recovered = WriteCache.openManual(after, store, cfg, CacheFixture.nextBoot());
      List<String> names;
      try (Stream<Path> s = Files.list(root)) {
        names = s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
      }
      assertEquals(List.of("a", "b"), names, "crash seed " + seed + ": names");
      assertArrayEquals(aData, CacheFixture.read(recovered, "a"), "crash seed " + seed + ": a");
      assertArrayEquals(Arrays.copyOf(bData, 566), CacheFixture.read(recovered, "b"),
          "crash seed " + seed + ": b");
      recovered.flush(60_000);
      assertArrayEquals(aData, Files.readAllBytes(root.resolve("a")), "seed " + seed);
      assertArrayEquals(Arrays.copyOf(bData, 566), Files.readAllBytes(root.resolve("b")),
          "seed " + seed);
      recovered.close();
    }
  }
}
