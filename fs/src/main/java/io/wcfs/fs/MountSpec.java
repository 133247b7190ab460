package io.wcfs.fs;

import io.wcfs.core.CacheConfig;
import io.wcfs.nativ.FlushStrategy;
import java.nio.file.Path;
import java.util.List;

/**
 * A validated mount request: real paths, engine config, FUSE options, whether extended
 * attributes are answered, and the metrics address (null: none).
 */
record MountSpec(Path cacheFile, Path backing, Path mountpoint, CacheConfig config,
    FlushStrategy strategy, long cacheSize, List<String> fuseOptions, boolean allowOther,
    int threads, int spinMicros, Path logFile, boolean takeOver, boolean singleMachine,
    long leaseMs, boolean xattrs, java.net.InetSocketAddress metrics,
    FuseUring.Mode transport) {

  /** What the claim of the backing directory needs from the command line. */
  BackingClaim.Options claimOptions() {
    BackingClaim.Options o = new BackingClaim.Options();
    o.takeOver = takeOver;
    o.singleMachine = singleMachine;
    o.leaseMs = leaseMs;
    return o;
  }
}
