package io.wcfs.examples;

import io.wcfs.core.CacheConfig;
import io.wcfs.core.CacheLayout;
import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.PmemCacheMemory;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.CacheFiles;
import io.wcfs.nativ.FlushStrategy;
import io.wcfs.nativ.NativeBuffer;
import io.wcfs.nativ.PersistentMemory;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.LongAdder;

/**
 * Engine benchmarks (issue 2): the seed thread's experiment (cost of copy + flush + commit per
 * 4 KiB block for each flush strategy), engine write+commit latency and IOPS from 1 and 4
 * threads, heap per block of the in-memory index on a 1M-block cache, and recovery time of that
 * cache. Run through examples/bench-engine.sh, which sets PMEM_IS_PMEM_FORCE=1 and puts the
 * cache on tmpfs.
 */
public final class EngineBench {
  private static final int BS = 4096;

  public static void main(String[] args) throws Exception {
    Path dir = Path.of(args.length > 0 ? args[0] : "/dev/shm/wcfs-bench");
    Path backingDir = Path.of(args.length > 1 ? args[1] : "/tmp/wcfs-bench-backing");
    long bigBlocks = args.length > 2 ? Long.parseLong(args[2]) : 1 << 20;
    // A directory on a real disk: the msync strategy is also measured with the cache there.
    Path diskDir = args.length > 3 ? Path.of(args[3]) : null;
    boolean quick = Boolean.getBoolean("wcfs.bench.quick"); // shorter runs, no big cache
    Files.createDirectories(dir);
    Files.createDirectories(backingDir);
    System.out.println("# wcfs engine benchmark, " + java.time.LocalDate.now() + ", "
        + Runtime.getRuntime().availableProcessors() + " cores, " + System.getProperty("os.arch")
        + ", PMEM_IS_PMEM_FORCE=" + System.getenv("PMEM_IS_PMEM_FORCE")
        + " (tmpfs stands in for pmem: durability simulated)");
    strategies(dir);
    engine(dir, backingDir, diskDir, quick ? 1_000_000_000L : 3_000_000_000L);
    if (!quick) {
      bigCache(dir, backingDir, bigBlocks);
    }
  }

  /** The seed's table: ns per 4 KiB block of copy + flush + commit, per strategy. */
  static void strategies(Path dir) throws Exception {
    Path f = dir.resolve("strategies.cache");
    Files.deleteIfExists(f);
    int blocks = 8192;
    CacheFiles.create(f, (long) blocks * BS, BS);
    System.out.println();
    System.out.println("## copy+flush+commit per 4 KiB block (ns), median of 5 runs;"
        + " device flushes per commit");
    System.out.printf("%-8s %18s %18s %14s %14s%n", "strategy", "commit every block",
        "commit every 64", "flushes/commit", "(every 64)");
    try (NativeBuffer src = new NativeBuffer(BS)) {
      byte[] junk = new byte[BS];
      new Random(1).nextBytes(junk);
      src.put(0, junk, 0, BS);
      for (FlushStrategy s : List.of(FlushStrategy.EAGER, FlushStrategy.LATE,
          FlushStrategy.MSYNC)) {
        try (PersistentMemory pm = PersistentMemory.map(f, s, false)) {
          long d0 = pm.deviceFlushes();
          double every1 = median(() -> run(pm, src.address(), blocks, 1));
          long d1 = pm.deviceFlushes();
          double every64 = median(() -> run(pm, src.address(), blocks, 64));
          long d2 = pm.deviceFlushes();
          // median() makes 6 runs; run() commits once per group (its last commit, with
          // nothing flushed since, costs nothing).
          double commits1 = 6.0 * blocks;
          double commits64 = 6.0 * (blocks / 64);
          System.out.printf("%-8s %18.0f %18.0f %14.2f %14.2f%n", s, every1, every64,
              (d1 - d0) / commits1, (d2 - d1) / commits64);
        } catch (java.io.IOException e) {
          System.out.printf("%-8s skipped: %s%n", s, e.getMessage());
        }
      }
    }
    Files.deleteIfExists(f);
  }

  private static double run(PersistentMemory pm, long src, int blocks, int group)
      throws Exception {
    long start = System.nanoTime();
    for (int i = 0; i < blocks; i++) {
      long off = (long) i * BS;
      pm.memcpy(off, src, BS);
      pm.flush(off, BS);
      if ((i + 1) % group == 0) {
        pm.commit();
      }
    }
    pm.commit();
    return (System.nanoTime() - start) / (double) blocks;
  }

  interface Run {
    double go() throws Exception;
  }

  private static double median(Run r) throws Exception {
    double[] v = new double[5];
    r.go(); // warm-up
    for (int i = 0; i < v.length; i++) {
      v[i] = r.go();
    }
    Arrays.sort(v);
    return v[v.length / 2];
  }

  /**
   * Engine write+commit: per flush strategy (and for msync also with the cache file on a real
   * disk when {@code diskDir} is given), latency and IOPS of a 4 KiB write+commit from 1 and 4
   * threads, and a 64-block (256 KiB) write+commit from 1 thread; each with the device flushes
   * per commit the memory issued (the engine's commits, from its counters).
   */
  static void engine(Path dir, Path backingDir, Path diskDir, long durationNanos)
      throws Exception {
    System.out.println();
    System.out.println("## engine write + commit, 256 MiB cache, random blocks of a 16 MiB file"
        + " per thread (overwrites: every commit also frees the old versions)");
    System.out.printf("%-7s %-6s %7s %12s %12s %10s %10s %14s%n", "strategy", "cache",
        "threads", "blocks/commit", "ops/s", "p50 us", "p99 us", "flushes/commit");
    List<Object[]> setups = new ArrayList<>();
    setups.add(new Object[] {FlushStrategy.EAGER, dir, "tmpfs"});
    setups.add(new Object[] {FlushStrategy.LATE, dir, "tmpfs"});
    setups.add(new Object[] {FlushStrategy.MSYNC, dir, "tmpfs"});
    if (diskDir != null) {
      setups.add(new Object[] {FlushStrategy.MSYNC, diskDir, "disk"});
    }
    for (Object[] setup : setups) {
      FlushStrategy strategy = (FlushStrategy) setup[0];
      Path f = ((Path) setup[1]).resolve("engine.cache");
      Files.deleteIfExists(f);
      CacheFiles.create(f, 256L << 20, CacheLayout.Geometry.minFileSize(BS));
      DirectoryBackingStore store = new DirectoryBackingStore(backingDir);
      WriteCache cache;
      try {
        cache = WriteCache.format(PmemCacheMemory.open(f, strategy, false), store,
            CacheConfig.DEFAULTS);
      } catch (java.io.IOException e) {
        System.out.printf("%-7s %-6s skipped: %s%n", strategy, setup[2], e.getMessage());
        Files.deleteIfExists(f);
        continue;
      }
      try {
        for (int t = 0; t < 4; t++) {
          Files.write(backingDir.resolve("bench" + t), new byte[0]);
        }
        // A disk commit costs milliseconds, not microseconds: half the time is samples enough.
        long duration = setup[2].equals("disk") ? durationNanos / 2 : durationNanos;
        for (int[] shape : new int[][] {{1, 1}, {4, 1}, {1, 64}}) {
          engineRun(cache, strategy, (String) setup[2], shape[0], shape[1], duration);
        }
      } finally {
        cache.close();
        Files.deleteIfExists(f);
      }
    }
  }

  private static void engineRun(WriteCache cache, FlushStrategy strategy, String where,
      int threads, int blocksPerCommit, long durationNanos) throws Exception {
    long[][] samples = new long[threads][];
    LongAdder ops = new LongAdder();
    List<Thread> ts = new ArrayList<>();
    long commits0 = cache.stats().commits().flushes();
    long flushes0 = cache.stats().commits().deviceFlushes();
    long start = System.nanoTime();
    for (int t = 0; t < threads; t++) {
      final int id = t;
      ts.add(new Thread(() -> {
        try (NativeBuffer buf = new NativeBuffer((long) BS * blocksPerCommit)) {
          WriteCache.OpenFile h = cache.open("bench" + id);
          Random rnd = new Random(id);
          long[] lat = new long[2_000_000];
          int n = 0;
          while (System.nanoTime() - start < durationNanos && n < lat.length) {
            // 16 MiB per file: stays cached
            long off = (long) rnd.nextInt(4096 - blocksPerCommit) * BS;
            long t0 = System.nanoTime();
            cache.write(h, off, buf.address(), (long) BS * blocksPerCommit);
            cache.commit();
            lat[n++] = System.nanoTime() - t0;
          }
          ops.add(n);
          samples[id] = Arrays.copyOf(lat, n);
          cache.close(h);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      }));
    }
    ts.forEach(Thread::start);
    for (Thread t : ts) {
      t.join();
    }
    double secs = (System.nanoTime() - start) / 1e9;
    long commits = cache.stats().commits().flushes() - commits0;
    long flushes = cache.stats().commits().deviceFlushes() - flushes0;
    long[] all = Arrays.stream(samples).flatMapToLong(Arrays::stream).sorted().toArray();
    System.out.printf("%-7s %-6s %7d %12d %,12.0f %10.2f %10.2f %14.2f%n", strategy, where,
        threads, blocksPerCommit, ops.sum() / secs, all[all.length / 2] / 1000.0,
        all[(int) (all.length * 0.99)] / 1000.0,
        commits == 0 ? 0.0 : flushes / (double) commits);
  }

  /** Heap per block of the index, and recovery time, on a cache of {@code blocks} blocks. */
  static void bigCache(Path dir, Path backingDir, long blocks) throws Exception {
    Path f = dir.resolve("big.cache");
    Files.deleteIfExists(f);
    CacheLayout.Geometry g = CacheLayout.Geometry.fit(
        (blocks + 64) * BS + blocks * 16 + blocks / 8 * 512 + (64 << 20), BS);
    CacheFiles.create(f, g.fileSize(), CacheLayout.Geometry.minFileSize(BS));
    DirectoryBackingStore store = new DirectoryBackingStore(backingDir);
    System.out.println();
    System.out.printf("## full cache of %,d blocks (%.1f GiB)%n", g.nBlocks(),
        g.nBlocks() * (double) BS / (1 << 30));
    int files = 64;
    for (int i = 0; i < files; i++) {
      Files.write(backingDir.resolve("big" + i), new byte[0]);
    }
    // No writeback: every block stays dirty, as after a burst the disk could not absorb.
    CacheConfig cfg = CacheConfig.DEFAULTS.withWatermarks(100, 100).withAutocommit(4096, 1000);
    long heapBefore = usedHeap();
    WriteCache cache = WriteCache.format(PmemCacheMemory.open(f, FlushStrategy.AUTO, false),
        store, cfg);
    long t0 = System.nanoTime();
    try (NativeBuffer buf = new NativeBuffer(256 * BS)) {
      long perFile = g.nBlocks() / files;
      List<WriteCache.OpenFile> hs = new ArrayList<>();
      for (int i = 0; i < files; i++) {
        hs.add(cache.open("big" + i));
      }
      for (long b = 0; b < perFile; b += 256) {
        for (int i = 0; i < files; i++) {
          long n = Math.min(256, perFile - b);
          cache.write(hs.get(i), b * BS, buf.address(), n * BS);
        }
      }
      cache.commit();
      for (WriteCache.OpenFile h : hs) {
        cache.close(h);
      }
    }
    double fillSecs = (System.nanoTime() - t0) / 1e9;
    long dirty = cache.stats().space().dirtyBlocks();
    long heapAfter = usedHeap();
    System.out.printf("filled %,d blocks in %.1f s (%.0f MB/s)%n", dirty, fillSecs,
        dirty * (double) BS / fillSecs / 1e6);
    System.out.printf("index heap: %.1f bytes/block counted by the engine, %.1f bytes/block"
        + " measured (heap after - before, GC'd)%n", cache.indexHeapBytes() / (double) dirty,
        (heapAfter - heapBefore) / (double) dirty);
    cache.abandon(); // as if the machine crashed with the cache full
    ((java.io.Closeable) () -> { }).close();
    System.gc();
    long r0 = System.nanoTime();
    WriteCache recovered = WriteCache.open(PmemCacheMemory.open(f, FlushStrategy.AUTO, false),
        store, cfg);
    double recoverSecs = (System.nanoTime() - r0) / 1e9;
    System.out.printf("recovery (open of the full cache, %,d blocks): %.2f s%n",
        recovered.stats().space().dirtyBlocks(), recoverSecs);
    recovered.abandon();
    Files.deleteIfExists(f);
    for (int i = 0; i < files; i++) {
      Files.deleteIfExists(backingDir.resolve("big" + i));
    }
  }

  private static long usedHeap() {
    for (int i = 0; i < 3; i++) {
      System.gc();
    }
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }
}
