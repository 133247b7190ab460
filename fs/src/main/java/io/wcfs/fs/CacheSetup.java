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

  /** Creates the cache file if missing (preallocated, mode 0600). */
  static void createIfMissing(Path cacheFile, long size, int blockSize) throws IOException {
    if (Files.exists(cacheFile)) {
      return;
    }
    LOG.info("creating cache file {} of {} bytes", cacheFile, size);
    CacheFiles.create(cacheFile, size, CacheLayout.Geometry.minFileSize(blockSize));
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
          && io.wcfs.core.CacheInspector.inspect(mem).committedBlocks() > 0;
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
      FlushStrategy strategy) throws IOException {
    CacheMemory mem = map(cacheFile, strategy);
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
