package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Random workloads over several files crash at random points (inside commits, writes, frees and
 * writeback, or between operations); the crash keeps a random subset of the words that were not
 * committed. After recovery every block of every file must equal that block in one of the
 * file's states since its last acknowledged fsync (in-flight operations may land either way, a
 * block is never torn, misplaced or invented), and after a full writeback the backing files must
 * equal what the cache served. Reproduce one workload with -Dwcfs.crash.seed=N.
 */
class WriteCacheCrashTest {
  private static final int BS = 512;
  private static final int NBLOCKS = 40;
  private static final int WORKLOADS = 48;
  private static final int CRASHES_PER_WORKLOAD = 25; // 1200 crash points
  private static final String[] NAMES = {"a", "b", "c", "d", "dir/e"};

  @TempDir Path tmp;

  static Stream<Long> seeds() {
    String fixed = System.getProperty("wcfs.crash.seed");
    if (fixed != null) {
      return Stream.of(Long.parseLong(fixed));
    }
    String range = System.getProperty("wcfs.crash.seeds"); // FROM-TO, for long soak runs
    if (range != null) {
      String[] r = range.split("-");
      return java.util.stream.LongStream.rangeClosed(Long.parseLong(r[0]), Long.parseLong(r[1]))
          .boxed();
    }
    return java.util.stream.LongStream.range(0, WORKLOADS).boxed();
  }

  /** A file as the model knows it: every state since the last acknowledged commit. */
  private static final class ModelFile {
    List<byte[]> states = new ArrayList<>();

    ModelFile(byte[] content) {
      states.add(content);
    }

    byte[] last() {
      return states.get(states.size() - 1);
    }
  }

  @DisplayName("crash anywhere, recover, nothing committed is lost, nothing torn or invented")
  @ParameterizedTest(name = "seed {0}")
  @MethodSource("seeds")
  void randomWorkloadSurvivesCrashes(long seed) throws Exception {
    Random rnd = new Random(seed);
    Path root = Files.createDirectories(tmp.resolve("backing-" + seed));
    Files.createDirectories(root.resolve("dir"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS)
        .flushesDevice(seed % 2 == 0); // odd seeds: pmem's two-step commit
    CacheConfig cfg = CacheFixture.manualConfig(BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
    Map<String, ModelFile> model = new TreeMap<>();
    // The namespaces since the last commit: a crash may leave any of them (the engine commits
    // on its own too: a full cache, a truncate), and recovery applies it to the backing dir.
    List<Map<String, ModelFile>> namespaces = new ArrayList<>();
    namespaces.add(new TreeMap<>(model));
    for (int crash = 0; crash < CRASHES_PER_WORKLOAD; crash++) {
      String where = "seed " + seed + ", crash " + crash;
      boolean midOp = rnd.nextInt(4) != 0;
      if (midOp) {
        mem.crashAfter(rnd.nextInt(600));
      }
      String inFlight = null;
      int ops = 5 + rnd.nextInt(40);
      for (int i = 0; i < ops && inFlight == null; i++) {
        inFlight = step(cache, store, root, model, namespaces, rnd);
      }
      // Crash: whatever was not committed may or may not have reached the memory.
      CrashingMemory after = mem.crash(rnd);
      cache.abandon();
      mem = after;
      try {
        cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
      } catch (IOException e) {
        throw new AssertionError(where + ": recovery failed", e);
      }
      model = checkRecoveredNamespace(cache, root, namespaces, where);
      OPS.clear();
      namespaces.clear();
      namespaces.add(new TreeMap<>(model));
      if (rnd.nextInt(5) == 0) {
        cache.flush(60_000);
        for (Map.Entry<String, ModelFile> e : model.entrySet()) {
          assertArrayEquals(e.getValue().last(), Files.readAllBytes(root.resolve(e.getKey())),
              where + ": backing file " + e.getKey() + " after full writeback");
        }
      }
    }
    cache.flush(60_000);
    for (Map.Entry<String, ModelFile> e : model.entrySet()) {
      assertArrayEquals(e.getValue().last(), Files.readAllBytes(root.resolve(e.getKey())),
          "seed " + seed + ": final backing file " + e.getKey());
    }
    cache.close();
  }

  /**
   * Seed 10, crash 7, reduced: after "rename b a; create b" the newest namespace names b's
   * model file a. Recovery left the namespace of the last commit (a: 283 zeros, b: truncated
   * to 566 by a self-committing truncate). Trying the newest namespace first must not leave
   * its reads in the shared model files: b's states must still include 566 when the namespace
   * of the last commit is tried.
   */
  @DisplayName("the recovered namespace is matched against each candidate afresh")
  @org.junit.jupiter.api.Test
  void candidateNamespacesDoNotLeakIntoEachOther() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("backing-shared"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
    CacheConfig cfg = CacheFixture.manualConfig(BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, cfg, CacheFixture.nextBoot());
    CacheFixture.create(cache, "a");
    CacheFixture.create(cache, "b");
    cache.truncate("a", 283);
    cache.truncate("b", 274);
    cache.commit();
    cache.truncate("b", 566);
    cache.flush(60_000);
    ModelFile a = new ModelFile(new byte[283]);
    ModelFile b = new ModelFile(new byte[274]);
    b.states.add(new byte[566]);
    Map<String, ModelFile> lastCommit = new TreeMap<>(Map.of("a", a, "b", b));
    Map<String, ModelFile> renamed = new TreeMap<>(Map.of("a", b, "b", new ModelFile(new byte[0])));
    Map<String, ModelFile> got =
        checkRecoveredNamespace(cache, root, List.of(lastCommit, renamed), "shared model files");
    assertEquals(lastCommit, got);
    cache.close();
  }

  /** What the workload did since the last commit, for failure messages. */
  private static final List<String> OPS = new ArrayList<>();

  /** One random operation; returns a description of it if the memory crashed during it. */
  private static String step(WriteCache cache, DirectoryBackingStore store, Path root,
      Map<String, ModelFile> model, List<Map<String, ModelFile>> namespaces, Random rnd)
      throws IOException {
    String name = NAMES[rnd.nextInt(NAMES.length)];
    ModelFile f = model.get(name);
    int op = rnd.nextInt(100);
    String to = NAMES[rnd.nextInt(NAMES.length)];
    OPS.add(f == null ? "create " + name : op < 8 ? "zero " + name : op < 55 ? "write " + name
        : op < 70 ? "commit" : op < 78 ? "truncate " + name : op < 83 ? "unlink " + name
        : op < 89 ? "rename " + name + " " + to : "writeback");
    try {
      if (f == null) {
        model.put(name, new ModelFile(new byte[0]));
        namespaces.add(new TreeMap<>(model)); // before the call: a crash may keep it or not
        CacheFixture.create(cache, name); // journaled, applied by writeback or recovery
      } else if (op < 8) {
        // punch hole or zero range (keeping the size, or not): short ones are stored as zero
        // blocks, long ones (more than a write chunk) zeroed in the backing file first
        int size = f.last().length;
        long off = rnd.nextInt(Math.max(1, Math.min(size + BS, 20 * BS)));
        int len = 1 + rnd.nextInt(16 * BS);
        int kind = rnd.nextInt(3);
        byte[] before = f.last();
        if (kind == 2 && off + len > size) {
          f.states.add(Arrays.copyOf(before, (int) off + len)); // extended, not yet zeroed
        }
        byte[] after = Arrays.copyOf(before, kind == 2 ? Math.max(size, (int) off + len) : size);
        Arrays.fill(after, (int) Math.min(off, after.length), (int) Math.min(off + len,
            after.length), (byte) 0);
        f.states.add(after);
        WriteCache.OpenFile h = cache.open(name);
        try {
          if (kind == 0) {
            cache.punchHole(h, off, len);
          } else {
            cache.zeroRange(h, off, len, kind == 1);
          }
        } finally {
          cache.close(h);
        }
      } else if (op < 55) {
        int size = f.last().length;
        long off = rnd.nextInt(4) == 0 ? size : rnd.nextInt(Math.max(1, Math.min(size + BS,
            12 * BS)));
        byte[] data = new byte[1 + rnd.nextInt(3 * BS)];
        rnd.nextBytes(data);
        f.states.add(CacheFixture.apply(f.last(), off, data));
        CacheFixture.write(cache, name, off, data);
      } else if (op < 70) {
        cache.commit();
        for (ModelFile m : model.values()) {
          byte[] last = m.last();
          m.states.clear();
          m.states.add(last);
        }
        namespaces.clear();
        namespaces.add(new TreeMap<>(model));
      } else if (op < 78) {
        int size = rnd.nextInt(Math.max(1, f.last().length + BS));
        f.states.add(Arrays.copyOf(f.last(), size));
        cache.truncate(name, size);
      } else if (op < 83) {
        model.remove(name);
        namespaces.add(new TreeMap<>(model));
        cache.unlink(name);
      } else if (op < 89) {
        if (!to.equals(name)) {
          model.remove(name);
          model.put(to, f);
          namespaces.add(new TreeMap<>(model));
          cache.rename(name, to);
        }
      } else {
        cache.writebackStep();
      }
      return null;
    } catch (CrashingMemory.SimulatedCrash | CacheErrorException e) {
      return op < 83 && op >= 78 ? "unlink " + name : op >= 83 && op < 89
          ? "rename " + name + " " + to : "data " + name;
    }
  }

  /**
   * After recovery the backing directory (recovery applied the journal) must show one of the
   * namespaces since the last commit, with every file's data as checkRecovered demands; returns
   * it as the model from here on.
   */
  private static Map<String, ModelFile> checkRecoveredNamespace(WriteCache cache, Path root,
      List<Map<String, ModelFile>> namespaces, String where) throws IOException {
    AssertionError last = null;
    StringBuilder why = new StringBuilder();
    for (int i = namespaces.size() - 1; i >= 0; i--) {
      Map<String, ModelFile> candidate = namespaces.get(i);
      try {
        checkRecovered(cache, root, candidate, where + " (namespace " + i + " of "
            + namespaces.size() + " since the last commit)");
        return new TreeMap<>(candidate);
      } catch (AssertionError e) {
        last = e;
        why.append("\n  ").append(e.getMessage());
        for (Map.Entry<String, ModelFile> m : candidate.entrySet()) {
          why.append(" | ").append(m.getKey()).append(":");
          for (byte[] st : m.getValue().states) {
            why.append(st.length).append(",");
          }
        }
      }
    }
    throw new AssertionError(where + ": no namespace since the last commit matches:" + why
        + "\n  operations since the last crash: " + OPS, last);
  }

  private static void checkRecovered(WriteCache cache, Path root, Map<String, ModelFile> model,
      String where) throws IOException {
    List<String> onDisk;
    try (Stream<Path> s = Files.walk(root)) {
      onDisk = s.filter(Files::isRegularFile).map(p -> root.relativize(p).toString()).sorted()
          .collect(Collectors.toList());
    }
    assertEquals(new ArrayList<>(model.keySet()), onDisk, where + ": files in backing dir");
    // Namespaces share their ModelFiles (a renamed file is one object under two names): the
    // recovered states replace them only once the whole candidate matched.
    Map<ModelFile, byte[]> recovered = new java.util.IdentityHashMap<>();
    for (Map.Entry<String, ModelFile> e : model.entrySet()) {
      byte[] got = CacheFixture.read(cache, e.getKey());
      List<byte[]> states = e.getValue().states;
      int min = Integer.MAX_VALUE;
      int max = 0;
      for (byte[] s : states) {
        min = Math.min(min, s.length);
        max = Math.max(max, s.length);
      }
      if (got.length < min || got.length > max) {
        fail(where + ": " + e.getKey() + " recovered with size " + got.length + " (backing file "
            + Files.size(root.resolve(e.getKey())) + " bytes, inode "
            + Files.getAttribute(root.resolve(e.getKey()), "unix:ino") + ")"
            + ", outside the sizes of its states since the last commit [" + min + ", " + max + "]");
      }
      for (int b = 0; b * BS < got.length; b++) {
        int from = b * BS;
        int to = Math.min(got.length, from + BS);
        boolean ok = false;
        for (byte[] s : states) {
          if (blockMatches(got, s, from, to)) {
            ok = true;
            break;
          }
        }
        if (!ok) {
          fail(where + ": " + e.getKey() + " block " + b + " matches none of its "
              + states.size() + " states since the last commit (torn, lost or invented data)");
        }
      }
      recovered.put(e.getValue(), got);
    }
    // Recovered state is the new truth, and it is durable.
    recovered.forEach((f, got) -> f.states = new ArrayList<>(List.of(got)));
  }

  private static boolean blockMatches(byte[] got, byte[] state, int from, int to) {
    for (int i = from; i < to; i++) {
      byte expected = i < state.length ? state[i] : 0;
      if (got[i] != expected) {
        return false;
      }
    }
    return true;
  }
}
