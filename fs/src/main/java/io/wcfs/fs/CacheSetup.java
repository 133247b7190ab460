package io.wcfs.fs;

import io.wcfs.core.CacheConfig;
import io.wcfs.core.CacheLayout;
import io.wcfs.core.CacheMemory;
import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.PmemCacheMemory;
import io.wcfs.core.ShadowCrashMemory;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.CacheFiles;
import io.wcfs.nativ.FlushStrategy;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * From a CACHE argument to an open cache: resolving a directory to {@code wcfs.cache},
 * creating a new file, formatting a zero-filled one, refusing a foreign one untouched, and
 * recovering an existing one. Shared by mount, format, check and writeback.
 */
final class CacheSetup {
  private static final Logger LOG = LoggerFactory.getLogger(CacheSetup.class);
  static final String CACHE_FILE_NAME = "wcfs.cache";

  private CacheSetup() {}

  /** CACHE as given: a directory holds wcfs.cache; anything else is the cache file itself. */
  static Path resolveCacheFile(Path cacheArg) {
    Path abs = cacheArg.toAbsolutePath().normalize();
    if (Files.isDirectory(abs)) {
      return abs.resolve(CACHE_FILE_NAME);
    }
    if (!Files.exists(abs)) {
      Path parent = abs.getParent();
      if (parent == null || !Files.isDirectory(parent)) {
        throw new UsageException("cache " + cacheArg + " does not exist and neither does its"
            + " directory; create the directory (mkdir -p " + abs + ") and pass it as CACHE");
      }
    }
    return abs;
  }

  static Path realDirectory(Path p, String role, String fix) {
    if (!Files.exists(p)) {
      throw new UsageException(role + " " + p + " does not exist; " + fix);
    }
    if (!Files.isDirectory(p)) {
      throw new UsageException(role + " " + p + " is not a directory; " + fix);
    }
    try {
      return p.toRealPath();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static boolean inside(Path child, Path parent) {
    return child.startsWith(parent);
  }

  /**
   * Creates the cache file if missing (preallocated, mode 0600); a preallocation that takes
   * more than a second reports its progress to {@code progress}, about once a second.
   */
  static void createIfMissing(Path cacheFile, long size, int blockSize,
      Consumer<String> progress) throws IOException {
    if (Files.exists(cacheFile)) {
      return;
    }
    create(cacheFile, size, blockSize, progress);
  }

  /** Creates a new cache file, preallocated as its filesystem wants (see CacheFiles). */
  static void create(Path cacheFile, long size, int blockSize, Consumer<String> progress)
      throws IOException {
    CacheFiles.Preallocation how = CacheFiles.preallocationFor(cacheFile.getParent());
    LOG.info("creating cache file {} of {} bytes ({})", cacheFile, size,
        how == CacheFiles.Preallocation.ZEROS ? "writing zeros: fallocate's unwritten extents"
            + " would cost a journal commit at the first write into each"
            : "fallocate: tmpfs or DAX");
    long start = System.nanoTime();
    ProgressPrinter printer = new ProgressPrinter(cacheFile, progress, start);
    CacheFiles.create(cacheFile, size, CacheLayout.Geometry.minFileSize(blockSize), printer);
    if (printer.printed) {
      progress.accept(String.format("preallocated %s: %s in %.1f s", cacheFile, gib(size),
          (System.nanoTime() - start) / 1e9));
    }
  }

  private static String gib(long bytes) {
    return String.format("%.1f GiB", bytes / (double) (1L << 30));
  }

  /** Progress lines once a second, the first after a second (tests may set the interval). */
  private static final class ProgressPrinter implements CacheFiles.Progress {
    private final Path file;
    private final Consumer<String> out;
    private final long intervalNanos;
    private long next;
    boolean printed;

    ProgressPrinter(Path file, Consumer<String> out, long start) {
      this.file = file;
      this.out = out;
      long ms = 1000;
      try {
        ms = Long.parseLong(System.getenv().getOrDefault("WCFS_PROGRESS_INTERVAL_MS", "1000"));
      } catch (NumberFormatException e) {
        // keep the default
      }
      this.intervalNanos = ms * 1_000_000L;
      this.next = start + intervalNanos;
    }

    @Override
    public void update(long done, long total) {
      long now = System.nanoTime();
      if (now < next || done >= total) {
        return;
      }
      next = now + intervalNanos;
      printed = true;
      String line = String.format("preallocating %s (writing zeros): %s of %s (%d%%)", file,
          gib(done), gib(total), done * 100 / total);
      LOG.info(line);
      out.accept(line);
    }
  }

  /** A sensible default size: 1 GiB, but never more than a quarter of the free space. */
  static long defaultSize(Path cacheFile) throws IOException {
    long free = Files.getFileStore(cacheFile.getParent()).getUsableSpace();
    return Math.max(64L << 20, Math.min(1L << 30, free / 4 / (1 << 20) * (1 << 20)));
  }

  /** Whether the cache file holds committed data not yet written back; read only. */
  static boolean holdsData(Path cacheFile) throws IOException {
    if (!Files.exists(cacheFile)) {
      return false;
    }
    try (PmemCacheMemory mem = map(cacheFile, FlushStrategy.MSYNC)) {
      return CacheLayout.inspect(mem) == CacheLayout.Contents.WCFS_CACHE
          && io.wcfs.core.CacheInspector.inspect(mem).holdsData();
    }
  }

  static PmemCacheMemory map(Path cacheFile, FlushStrategy strategy) throws IOException {
    if (!Files.isReadable(cacheFile) || !Files.isWritable(cacheFile)) {
      throw new AccessDeniedException(cacheFile.toString(), null,
          "cannot read and write the cache file; run wcfs as its owner (or root)");
    }
    boolean fallback = "1".equals(System.getenv("WCFS_FORCE_FALLBACK"));
    return PmemCacheMemory.open(cacheFile, strategy, fallback);
  }

  /**
   * Opens the cache for {@code backing}: formats it when it is zero-filled, new, or left
   * half-formatted by a crash, refuses a file that is none of these and not a cache (leaving it
   * untouched), recovers it otherwise.
   */
  static WriteCache open(Path cacheFile, DirectoryBackingStore backing, CacheConfig config,
      FlushStrategy strategy, Runnable beforeDeviceWait) throws IOException {
    PmemCacheMemory mapped = map(cacheFile, strategy);
    mapped.beforeDeviceWait(beforeDeviceWait);
    CacheMemory mem = mapped;
    if ("1".equals(System.getenv("WCFS_TEST_CRASH_SHADOW"))) {
      LOG.warn("TEST MODE: cache memory keeps a crash shadow in {}",
          ShadowCrashMemory.shadowOf(cacheFile));
      mem = ShadowCrashMemory.wrap(mem, cacheFile);
    }
    try {
      switch (CacheLayout.inspect(mem)) {
        case ZERO_FILLED:
          LOG.info("formatting {} for {} ({}-byte blocks)", cacheFile, backing.root(),
              config.blockSize());
          return WriteCache.format(mem, backing, config);
        case FORMAT_INTERRUPTED:
          LOG.warn("{}: an earlier format was interrupted before it finished (the file holds no"
              + " data); formatting it again for {} ({}-byte blocks)", cacheFile, backing.root(),
              config.blockSize());
          return WriteCache.format(mem, backing, config);
        case FOREIGN:
          throw new UsageException("cache file " + cacheFile + " is not a wcfs cache and not"
              + " zero-filled; refusing to overwrite it: pick another file, or run `wcfs format"
              + " --force` if its contents may be destroyed");
        default:
          return WriteCache.open(mem, backing, config);
      }
    } catch (IOException | RuntimeException e) {
      mem.close();
      throw e;
    }
  }
}
