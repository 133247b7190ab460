package io.wcfs.fs;

import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.FileLocks;
import io.wcfs.nativ.LibC;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A mounted wcfs in this process: lock the cache, open (format or recover) it, mount FUSE,
 * serve the control socket; when the filesystem is unmounted (wcfs umount, fusermount -u,
 * umount, SIGTERM) write everything back, then exit.
 */
final class Daemon {
  private static final Logger LOG = LoggerFactory.getLogger(Daemon.class);
  /** Set once a JVM shutdown (SIGTERM) began: Main must not call System.exit then. */
  static volatile boolean shuttingDown;

  private Daemon() {}

  /** Mounts and blocks until unmounted; {@code ready} gets "READY" once the mount is usable. */
  static void run(MountSpec spec, PrintStream ready) throws IOException {
    // The metrics address first: a taken one is refused before the cache is created or opened.
    Metrics metrics = spec.metrics() == null ? null : Metrics.start(spec.metrics());
    try {
      run(spec, ready, metrics);
    } finally {
      if (metrics != null) {
        metrics.close();
      }
    }
  }

  private static void run(MountSpec spec, PrintStream ready, Metrics metrics)
      throws IOException {
    CacheSetup.createIfMissing(spec.cacheFile(), spec.cacheSize(), spec.config().blockSize(),
        line -> {
          if (ready != null) { // the launcher shows it on its terminal
            ready.println("PROGRESS " + line);
            ready.flush();
          }
        });
    int lockFd = LibC.open(spec.cacheFile().toString(), LibC.O_RDONLY, 0);
    try {
      if (!FileLocks.tryLockExclusive(lockFd)) {
        throw new UsageException("cache " + spec.cacheFile() + " is in use by " + owner(spec)
            + "; unmount that first (wcfs umount MOUNTPOINT)");
      }
      Path ownerFile = RuntimeDir.ownerFileFor(spec.cacheFile());
      Files.writeString(ownerFile, "the wcfs mount at " + spec.mountpoint() + " (pid "
          + ProcessHandle.current().pid() + ")");
      try {
        // The claim comes before recovery, which may already write to the backing directory.
        BackingClaim.Options claimOptions = spec.claimOptions();
        claimOptions.say = msg -> {
          if (ready != null) {
            ready.println("SAY " + msg);
            ready.flush();
          } else {
            System.err.println("wcfs: " + msg);
          }
        };
        claimOptions.cacheHoldsData = () -> CacheSetup.holdsData(spec.cacheFile());
        BackingClaim claim = BackingClaim.acquire(spec.backing(), spec.cacheFile(),
            spec.mountpoint(), claimOptions);
        boolean clean = false;
        try {
          DirectoryBackingStore backing = new DirectoryBackingStore(spec.backing(),
              FuseLoop::handOff, FuseLoop::handOffForRead);
          backing.setWriteGuard(claim::checkMayWrite);
          WriteCache cache = CacheSetup.open(spec.cacheFile(), backing, spec.config(),
              spec.strategy(), FuseLoop::handOffIfPending);
          serve(spec, cache, backing, claim, ready, metrics);
          clean = true; // everything was written back
        } finally {
          claim.release(clean);
        }
      } finally {
        Files.deleteIfExists(ownerFile);
      }
    } finally {
      LibC.close(lockFd); // releases the lock
    }
  }

  private static String owner(MountSpec spec) {
    try {
      return Files.readString(RuntimeDir.ownerFileFor(spec.cacheFile()));
    } catch (IOException e) {
      return "another wcfs process";
    }
  }

  private static void serve(MountSpec spec, WriteCache cache, DirectoryBackingStore backing,
      BackingClaim claim, PrintStream ready, Metrics metrics)
      throws IOException {
    WcfsFileSystem fs = new WcfsFileSystem(cache, backing, spec.xattrs());
    if (metrics != null) {
      metrics.attach(cache::stats, mountInfo(spec, fs, claim), fs);
      LOG.info("Prometheus metrics at http://{}:{}/metrics",
          metrics.address().getAddress().getHostAddress(), metrics.port());
    }
    CountDownLatch drained = new CountDownLatch(1);
    Thread hook = new Thread(() -> {
      shuttingDown = true;
      LOG.info("signal received: unmounting {} and writing back", spec.mountpoint());
      try {
        Mounts.fusermountUnmount(spec.mountpoint(), true); // the FUSE loop then ends
      } catch (IOException e) {
        // already being unmounted, most likely: the drain below still has to finish
        LOG.warn("could not unmount {}: {}", spec.mountpoint(), e.getMessage());
      }
      try {
        drained.await(10, TimeUnit.MINUTES);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }, "wcfs-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    ControlServer[] control = new ControlServer[1];
    Thread watcher = new Thread(() -> announceWhenMounted(spec, fs, cache, claim, ready,
        control),
        "wcfs-mount-watch");
    watcher.setDaemon(true);
    watcher.start();
    boolean served = false;
    try {
      // WCFS_NO_KILLPRIV=1 answers xattrs without kill-priv v2: for measuring what it saves
      // (the kernel then asks for security.capability before every write), not for use.
      boolean killPriv = spec.xattrs() && !"1".equals(System.getenv("WCFS_NO_KILLPRIV"));
      FuseLoop.serve(fs.operations(), spec.mountpoint(), fuseArgs(spec), spec.threads(),
          spec.spinMicros(), killPriv, spec.transport());
      served = true;
    } finally {
      watcher.interrupt();
      if (control[0] != null) {
        control[0].close();
      }
      LOG.info(served ? "{} unmounted; writing back every cached block"
          : "{} could not be mounted; closing the cache", spec.mountpoint());
      try {
        try {
          // Gives up at once if the claim is lost for good: writeback would retry forever.
          BackingClaim.drain(cache, claim, TimeUnit.HOURS.toMillis(24));
        } catch (IOException e) {
          cache.abandon();
          throw e;
        }
        cache.close(TimeUnit.HOURS.toMillis(24));
        LOG.info("all data written back to {}; cache {} is clean", spec.backing(),
            spec.cacheFile());
      } catch (IOException e) {
        LOG.error("writeback at unmount failed; committed data stays in {} and is written back"
            + " at the next mount or by `wcfs writeback`", spec.cacheFile(), e);
        throw e;
      } finally {
        drained.countDown();
        if (!shuttingDown) {
          Runtime.getRuntime().removeShutdownHook(hook);
        }
      }
    }
  }

  static List<String> fuseArgs(MountSpec spec) {
    // big_writes: more than 4 KiB per write request (FuseLoop negotiates up to 1 MiB).
    // kernel_cache: keep the kernel's page cache of a file across opens (libfuse2 otherwise
    // drops it at every open, and a database reopening its files read everything through us
    // again: 13k reads in 10 s of pgbench, 52 with it). Correct here because a file changes
    // only through this mount; writing the backing directory behind a mount is unsupported.
    // negative_timeout=1: the kernel keeps "no such name" for a second, as it keeps names
    // (entry_timeout, 1 s by default). SQLite asks for its -journal and -wal files at every
    // transaction: 3 LOOKUPs per transaction in rollback-journal mode, 1 with it. Correct for
    // the same reason as kernel_cache; a later -o negative_timeout=N overrides it.
    // hard_remove: unlink and rename over a file that is open remove the name, as on any
    // filesystem, instead of libfuse2 renaming the file to a visible .fuse_hidden… name (which
    // kept its directory from being removed, showed st_nlink 1, and made a rename over an open
    // file two namespace operations a crash could split). The open file is served through its
    // handle (WcfsFileSystem, flag_nullpath_ok) and the engine keeps it until the last close.
    List<String> opts = new ArrayList<>(List.of("big_writes", "kernel_cache", "fsname=wcfs",
        "subtype=wcfs", "use_ino", "negative_timeout=1", "hard_remove"));
    if (spec.allowOther()) {
      opts.add("default_permissions"); // the kernel checks modes for every user
    }
    if (spec.backing().equals(spec.mountpoint())) {
      // In place: the backing directory is the mount point and holds the files shown (its
      // root was opened before the mount); libfuse2 refuses a non-empty one without this.
      opts.add("nonempty");
    }
    opts.addAll(spec.fuseOptions());
    return List.of("-o", String.join(",", opts));
  }

  private static void announceWhenMounted(MountSpec spec, WcfsFileSystem fs, WriteCache cache,
      BackingClaim claim, PrintStream ready, ControlServer[] control) {
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!Mounts.isWcfs(spec.mountpoint())) {
        if (System.nanoTime() > deadline) {
          LOG.error("{} did not appear in /proc/self/mountinfo within 30 s", spec.mountpoint());
          return;
        }
        Thread.sleep(10);
      }
      control[0] = new ControlServer(RuntimeDir.socketFor(spec.mountpoint()), cache, claim,
          () -> mountInfo(spec, fs, claim));
      LOG.info("mounted {} over {} with cache {} ({})", spec.mountpoint(), spec.backing(),
          spec.cacheFile(), cache.stats().commits().memory());
      if (ready != null) {
        ready.println("READY");
        ready.flush();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      LOG.error("control socket for {} could not start", spec.mountpoint(), e);
    }
  }

  static Map<String, Object> mountInfo(MountSpec spec, WcfsFileSystem fs, BackingClaim claim) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("mountpoint", spec.mountpoint().toString());
    m.put("backing", spec.backing().toString());
    m.put("claim", claim.status());
    m.put("cache", spec.cacheFile().toString());
    m.put("pid", ProcessHandle.current().pid());
    m.put("log", spec.logFile() == null ? "stderr" : spec.logFile().toString());
    m.put("uid", LibC.geteuid());
    // 1 MiB once FuseLoop's max_pages negotiation took; 128 KiB (131072) if the kernel refused
    m.put("largest_write_request_bytes", fs.largestWrite());
    // how far the backing directory may lag below the watermark (0: without bound)
    m.put("max_age_ms", spec.config().maxAgeMs());
    m.put("xattrs", fs.xattrs().enabled() ? "on" : "off (-o noxattr)");
    m.put("fuse_transport", FuseLoop.transport());
    m.put("fuse_ring_requests", FuseUring.ringRequests());
    m.put("kill_priv_v2", FuseLoop.killPrivV2() ? "on" : "off");
    m.put("getxattr_requests", FuseWorker.getxattrRequests());
    m.putAll(FuseWorker.requestCounts()); // fuse_requests, and fuse_<opcode> for each one seen
    m.put("fuse_requests_direct", DataRequests.answered()); // without libfuse2's layer
    m.put("capability_probes", fs.xattrs().capabilityProbes());
    m.put("capability_probes_from_memory", fs.xattrs().capabilityProbesFromMemory());
    m.put("capabilities_cleared", fs.xattrs().capabilitiesCleared());
    m.put("metrics", spec.metrics() == null ? "off" : "http://"
        + spec.metrics().getAddress().getHostAddress() + ":" + spec.metrics().getPort()
        + "/metrics");
    return m;
  }
}
