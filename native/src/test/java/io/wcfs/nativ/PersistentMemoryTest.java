package io.wcfs.nativ;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class PersistentMemoryTest {
  @TempDir Path tmp;

  private Path cacheFile(long size) throws IOException {
    Path f = tmp.resolve("c" + System.nanoTime());
    CacheFiles.create(f, size, 4096);
    return f;
  }

  @DisplayName("copy, assign, flush, commit reach the file, with libpmem and with the fallback")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void roundTrip(boolean fallback) throws IOException {
    Path f = cacheFile(1 << 20);
    byte[] data = new byte[8192];
    new Random(1).nextBytes(data);
    try (PersistentMemory pm = PersistentMemory.map(f, FlushStrategy.AUTO, fallback);
        NativeBuffer src = new NativeBuffer(data.length)) {
      assertEquals(fallback || !LibPmem.isAvailable() ? PersistentMemory.Backend.FALLBACK
          : PersistentMemory.Backend.LIBPMEM, pm.backend());
      // /tmp is not pmem (PMEM_IS_PMEM_FORCE unset in the tests): auto means msync.
      assertEquals(FlushStrategy.MSYNC, pm.strategy());
      assertTrue(pm.describe().contains(fallback ? "fallback" : "libpmem"), pm.describe());
      src.put(0, data, 0, data.length);
      pm.memcpy(4096, src.address(), data.length);
      pm.assign(16, 0x1122334455667788L);
      pm.flush(0, 4096 + data.length);
      pm.commit();
      assertEquals(0x1122334455667788L, pm.readLong(16));
      byte[] back = new byte[data.length];
      pm.read(4096, back, 0, back.length);
      assertArrayEquals(data, back);
    }
    byte[] onDisk = Files.readAllBytes(f);
    assertEquals(0x1122334455667788L,
        ByteBuffer.wrap(onDisk).order(ByteOrder.LITTLE_ENDIAN).getLong(16));
    assertArrayEquals(data, java.util.Arrays.copyOfRange(onDisk, 4096, 4096 + data.length));
  }

  @Test
  @DisplayName("eager or late on a mapping that is not pmem is refused with the fix")
  void nonTemporalNeedsPmem() throws IOException {
    Path f = cacheFile(1 << 20);
    for (FlushStrategy s : new FlushStrategy[] {FlushStrategy.EAGER, FlushStrategy.LATE}) {
      IOException e = assertThrows(IOException.class, () -> PersistentMemory.map(f, s, true));
      assertTrue(e.getMessage().contains("use --flush-strategy msync"), e.getMessage());
    }
  }

  @Test
  @DisplayName("auto picks what the seed thread measured")
  void autoChoice() {
    assertEquals(FlushStrategy.EAGER, FlushStrategy.autoFor(true, "amd64"));
    assertEquals(FlushStrategy.LATE, FlushStrategy.autoFor(true, "aarch64"));
    assertEquals(FlushStrategy.MSYNC, FlushStrategy.autoFor(false, "amd64"));
    assertThrows(IllegalArgumentException.class, () -> FlushStrategy.parse("fast"));
  }

  @Test
  @DisplayName("cache files: preallocated, mode 0600, too small and too large refused")
  void createCacheFile() throws IOException {
    Path f = tmp.resolve("cache");
    CacheFiles.create(f, 8 << 20, 4096);
    assertEquals(8 << 20, Files.size(f));
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
    Process stat = new ProcessBuilder("stat", "-c", "%b", f.toString()).start();
    long allocated = Long.parseLong(new String(stat.getInputStream().readAllBytes()).trim())
        * 512L;
    assertTrue(allocated >= 8 << 20, "preallocated, not sparse: " + allocated);
    IOException small = assertThrows(IOException.class,
        () -> CacheFiles.create(tmp.resolve("small"), 100, 4096));
    assertTrue(small.getMessage().contains("too small"), small.getMessage());
    IOException big = assertThrows(IOException.class,
        () -> CacheFiles.create(tmp.resolve("big"), Long.MAX_VALUE / 2, 4096));
    assertTrue(big.getMessage().contains("larger than the free space"), big.getMessage());
    assertFalse(Files.exists(tmp.resolve("small")) || Files.exists(tmp.resolve("big")));
  }

  @Test
  @DisplayName("pmem_assign refuses unaligned offsets; ranges are bounds-checked")
  void checks() throws IOException {
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 16), FlushStrategy.MSYNC,
        true)) {
      assertThrows(IllegalArgumentException.class, () -> pm.assign(3, 1));
      assertThrows(IndexOutOfBoundsException.class, () -> pm.readLong(1 << 16));
    }
  }

  /**
   * The kernel of an arm64 machine with 64 KiB pages, as far as a page-cache mapping's flush
   * and commit see it: msync of an address that is not page-aligned fails with EINVAL, as
   * there. Records every call; the methods are not marked as overrides because the set the
   * memory uses changed (it used to msync every flushed range).
   */
  static class CountingKernel implements PersistentMemory.Kernel {
    static final long PAGE = 65536;
    final List<String> calls = new ArrayList<>();
    long base;

    public long pageSize() {
      return PAGE;
    }

    public int msync(long address, long length, int flags) {
      calls.add("msync " + (address - base) + " " + length);
      return (address - base) % PAGE == 0 ? 0 : -22;
    }

    public int syncFileRange(int fd, long offset, long length, int flags) {
      calls.add("sync_file_range " + offset + " " + length);
      return offset % PAGE == 0 && length % PAGE == 0 ? 0 : -22;
    }

    public int fdatasync(int fd) {
      calls.add("fdatasync");
      return 0;
    }

    /** Stores, recorded apart from the flush and commit calls, and really written. */
    final List<String> stores = new ArrayList<>();

    public void pwrite(int fd, long address, long count, long offset) throws NativeIOException {
      stores.add("pwrite " + offset + " " + count);
      LibC.pwrite(fd, address, count, offset);
    }

    List<String> take() {
      List<String> out = new ArrayList<>(calls);
      calls.clear();
      return out;
    }
  }

  @DisplayName("a commit on a page-cache mapping: page-aligned ranges, merged, one call each,"
      + " one fdatasync")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void commitMergesPageRanges(boolean fallback) throws IOException {
    Assumptions.assumeTrue(fallback || LibPmem.isAvailable(), "libpmem is not installed");
    final long page = CountingKernel.PAGE;
    Path f = cacheFile(4 << 20);
    CountingKernel kernel = new CountingKernel();
    try (PersistentMemory pm = PersistentMemory.map(f, FlushStrategy.AUTO, fallback, kernel);
        NativeBuffer block = new NativeBuffer(4096)) {
      kernel.base = pm.address();
      assertEquals(FlushStrategy.MSYNC, pm.strategy());
      // What the engine's commit does for 64 blocks written in a row: per block its data and
      // its 16-byte entry, each flushed on its own, then pmem_commit.
      long entries = page + 32;
      long data = (1 << 20) + 3 * 4096; // not on a 64 KiB boundary
      for (int b = 0; b < 64; b++) {
        pm.memcpy(data + b * 4096L, block.address(), 4096);
        pm.flush(data + b * 4096L, 4096);
        pm.assign(entries + 16L * b + 8, 7);
        pm.flush(entries + 16L * b, 16);
      }
      pm.commit();
      // Entries: one 64 KiB page. Data: 256 KiB from 12 KiB into a page: five pages.
      assertEquals(List.of("sync_file_range " + page + " " + page,
          "sync_file_range " + (1 << 20) + " " + 5 * page, "fdatasync"), kernel.take());
      assertEquals(1, pm.deviceFlushes(), "64 blocks and their entries: one device flush");
      // The commit point: one word, one page, one device flush.
      pm.assign(24, 2);
      pm.flush(24, 8);
      pm.commit();
      assertEquals(List.of("sync_file_range 0 " + page, "fdatasync"), kernel.take());
      assertEquals(2, pm.deviceFlushes());
      // Out of order, overlapping and touching ranges across pages 1 to 3 make one call.
      pm.flush(3 * page, 1);
      pm.flush(2 * page + 100, 10);
      pm.flush(2 * page - 8, 16);
      pm.commit();
      assertEquals(List.of("sync_file_range " + page + " " + 3 * page, "fdatasync"),
          kernel.take());
      // A commit with nothing flushed costs nothing.
      pm.commit();
      assertEquals(List.of(), kernel.take());
      assertEquals(3, pm.deviceFlushes(), "sync_file_range alone is no device flush");
    }
  }

  @DisplayName("stores into a page-cache mapping are pwrites into the cache file's pages, seen"
      + " through the mapping at once")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void pageCacheStoresArePwrites(boolean fallback) throws IOException {
    Assumptions.assumeTrue(fallback || LibPmem.isAvailable(), "libpmem is not installed");
    Path f = cacheFile(1 << 20);
    CountingKernel kernel = new CountingKernel();
    byte[] data = new byte[8192];
    new Random(3).nextBytes(data);
    try (PersistentMemory pm = PersistentMemory.map(f, FlushStrategy.MSYNC, fallback, kernel);
        NativeBuffer src = new NativeBuffer(data.length)) {
      src.put(0, data, 0, data.length);
      pm.memcpy(4096, src.address(), data.length);
      pm.assign(16, 0x0102030405060708L);
      assertEquals(List.of("pwrite 4096 8192", "pwrite 16 8"), kernel.stores);
      assertEquals(0x0102030405060708L, pm.readLong(16), "the mapping sees the pwrite");
      byte[] back = new byte[data.length];
      pm.read(4096, back, 0, back.length);
      assertArrayEquals(data, back);
      pm.flush(0, 4096 + data.length);
      pm.commit();
    }
    byte[] onDisk = Files.readAllBytes(f);
    assertEquals(0x0102030405060708L,
        ByteBuffer.wrap(onDisk).order(ByteOrder.LITTLE_ENDIAN).getLong(16));
    assertArrayEquals(data, java.util.Arrays.copyOfRange(onDisk, 4096, 4096 + data.length));
  }

  @Test
  @DisplayName("the page size is the kernel's, not an assumed 4096")
  void realPageSize() throws Exception {
    Process getconf = new ProcessBuilder("getconf", "PAGESIZE").start();
    long expected = Long.parseLong(new String(getconf.getInputStream().readAllBytes()).trim());
    assertEquals(expected, LibC.pageSize());
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 16), FlushStrategy.MSYNC,
        true)) {
      assertTrue(pm.describe().contains(expected + "-byte pages"), pm.describe());
    }
  }

  @DisplayName("a page-cache mapping faults single pages: no read-around (MADV_RANDOM)")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void pageCacheMappingWithoutReadAround(boolean fallback) throws IOException {
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 20), FlushStrategy.MSYNC,
        fallback)) {
      String start = Long.toHexString(pm.address()) + "-";
      List<String> smaps = Files.readAllLines(Path.of("/proc/self/smaps"));
      String flags = null;
      for (int i = 0; i < smaps.size() && flags == null; i++) {
        if (smaps.get(i).startsWith(start)) {
          for (int j = i + 1; j < smaps.size(); j++) {
            if (smaps.get(j).startsWith("VmFlags:")) {
              flags = smaps.get(j);
              break;
            }
          }
        }
      }
      // Read-around fills ext4's page cache with large folios, into which every small pwrite
      // of a commit is an order of magnitude dearer (PersistentMemory.dropCachedPages, noReadAround).
      assertTrue(flags != null && List.of(flags.split(" ")).contains("rr"),
          "the mapping at " + start + " lacks the random-read flag: " + flags);
    }
  }

  @Test
  @DisplayName("started ranges are written at once and waited for by the next commit; a start"
      + " that failed fails it")
  void startedRangesAreWaitedForByTheNextCommit() throws IOException {
    final long page = CountingKernel.PAGE;
    CountingKernel kernel = new CountingKernel() {
      @Override
      public int syncFileRange(int fd, long offset, long length, int flags) {
        super.syncFileRange(fd, offset, length, flags);
        return offset == 3 * page ? -5 : 0; // EIO for that one range
      }
    };
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 20), FlushStrategy.MSYNC,
        true, kernel)) {
      pm.flush(page + 16, 8);
      pm.startCommit();
      assertEquals(List.of("sync_file_range " + page + " " + page), kernel.take(),
          "started at once");
      pm.commit();
      assertEquals(List.of("fdatasync"), kernel.take(), "waited for by the commit, not restarted");
      pm.commit();
      assertEquals(List.of(), kernel.take(), "nothing since: nothing to wait for");
      pm.flush(3 * page, 8);
      pm.startCommit(); // fails, and says nothing yet
      NativeIOException e = assertThrows(NativeIOException.class, pm::commit);
      assertTrue(e.getMessage().contains("sync_file_range"), e.getMessage());
      assertThrows(NativeIOException.class, pm::commit, "and every later one");
    }
  }

  @Test
  @DisplayName("concurrent stores, starts and commits: no commit returns before an fdatasync"
      + " that began after its stores")
  void concurrentCommitsWaitForAnFdatasyncAfterTheirStores() throws Exception {
    // A clock ticks after every store (a pwrite) and at every fdatasync's start; the newest
    // start among the fdatasyncs that have ended bounds what the device holds: every store
    // that ticked before it.
    java.util.concurrent.atomic.AtomicLong clock = new java.util.concurrent.atomic.AtomicLong();
    java.util.concurrent.atomic.AtomicLong durableUpTo =
        new java.util.concurrent.atomic.AtomicLong();
    ThreadLocal<long[]> lastStore = ThreadLocal.withInitial(() -> new long[1]);
    CountingKernel kernel = new CountingKernel() {
      @Override
      public void pwrite(int fd, long address, long count, long offset)
          throws NativeIOException {
        LibC.pwrite(fd, address, count, offset);
        lastStore.get()[0] = clock.incrementAndGet();
      }

      @Override
      public int syncFileRange(int fd, long offset, long length, int flags) {
        return 0;
      }

      @Override
      public int fdatasync(int fd) {
        long began = clock.incrementAndGet();
        java.util.concurrent.locks.LockSupport.parkNanos(20_000); // a device flush
        durableUpTo.accumulateAndGet(began, Math::max);
        return 0;
      }
    };
    List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(4 << 20), FlushStrategy.MSYNC,
        true, kernel)) {
      List<Thread> threads = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        long seed = t;
        threads.add(new Thread(() -> {
          Random r = new Random(seed);
          try {
            for (int i = 0; i < 400; i++) {
              long at = r.nextInt(60) * CountingKernel.PAGE + 8 * seed;
              pm.assign(at, i);
              long stored = lastStore.get()[0];
              pm.flush(at, 8);
              if (r.nextBoolean()) {
                pm.startCommit(); // as a commit waiting for another's device flush does
              }
              pm.commit();
              if (durableUpTo.get() <= stored) {
                throw new AssertionError("a commit returned before any fdatasync that began"
                    + " after its store (tick " + stored + ") had ended");
              }
            }
          } catch (Throwable e) {
            errors.add(e);
          }
        }));
      }
      threads.forEach(Thread::start);
      for (Thread th : threads) {
        th.join(60_000);
      }
    }
    assertTrue(errors.isEmpty(), () -> "first failure: " + errors.get(0));
  }

  @Test
  @DisplayName("a failed fdatasync fails that commit and every later one")
  void failedCommitIsSticky() throws IOException {
    CountingKernel failing = new CountingKernel() {
      @Override
      public int fdatasync(int fd) {
        super.fdatasync(fd);
        return -5; // EIO
      }
    };
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 20), FlushStrategy.MSYNC,
        true, failing)) {
      pm.flush(0, 8);
      NativeIOException e = assertThrows(NativeIOException.class, pm::commit);
      assertTrue(e.getMessage().contains("fdatasync of the cache file"), e.getMessage());
      // The kernel may have dropped the pages it failed to write: nothing later can vouch.
      assertThrows(NativeIOException.class, pm::commit);
    }
  }

  @Test
  @DisplayName("a commit whose ranges a concurrent commit took waits for that commit's fdatasync")
  void commitWaitsForTheCommitThatTookItsRanges() throws Exception {
    java.util.concurrent.CountDownLatch inFdatasync = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
    CountingKernel slow = new CountingKernel() {
      @Override
      public int fdatasync(int fd) {
        super.fdatasync(fd);
        inFdatasync.countDown();
        try {
          release.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        return 0;
      }
    };
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 20), FlushStrategy.MSYNC,
        true, slow)) {
      pm.flush(0, 8); // thread A's store
      Thread b = new Thread(() -> {
        try {
          pm.commit(); // takes A's range, then hangs in fdatasync
        } catch (IOException e) {
          throw new RuntimeException(e);
        }
      });
      b.start();
      inFdatasync.await();
      java.util.concurrent.CompletableFuture<Void> a =
          java.util.concurrent.CompletableFuture.runAsync(() -> {
            try {
              pm.commit();
            } catch (IOException e) {
              throw new RuntimeException(e);
            }
          });
      Thread.sleep(200);
      assertFalse(a.isDone(), "A's commit returned while its range was not durable yet");
      release.countDown();
      a.get(10, java.util.concurrent.TimeUnit.SECONDS);
      b.join(10_000);
    }
  }
}
