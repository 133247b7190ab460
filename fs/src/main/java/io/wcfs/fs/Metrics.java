package io.wcfs.fs;

import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.wcfs.core.CacheStats;
import java.io.IOException;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Supplier;
import java.util.function.ToDoubleFunction;

/**
 * The Prometheus endpoint ({@code -o metrics=HOST:PORT}): every {@code wcfs status} field as a
 * {@code wcfs_*} counter or gauge, read from one {@link CacheStats} snapshot per scrape, plus a
 * histogram of the commits callers waited for. Served by the Prometheus Java client's HTTP
 * exporter in the text format at {@code /metrics}.
 */
final class Metrics implements AutoCloseable {
  /** Commit latency buckets: 1 µs to 1 s (pmem commits take microseconds, disks milliseconds). */
  private static final double[] COMMIT_BUCKETS = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4,
      2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1};

  private final PrometheusRegistry registry = new PrometheusRegistry();
  private final HTTPServer server;
  private final ExecutorService executor;
  private final InetSocketAddress address;

  private Metrics(InetSocketAddress address) throws IOException {
    this.address = address;
    executor = Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "wcfs-metrics");
      t.setDaemon(true);
      return t;
    });
    try {
      server = HTTPServer.builder().inetAddress(address.getAddress()).port(address.getPort())
          .registry(registry).executorService(executor).buildAndStart();
    } catch (IOException e) {
      executor.shutdownNow();
      throw inUse(address, e);
    }
  }

  /** Binds the address now, before anything else is touched; UsageException if it is taken. */
  static Metrics start(InetSocketAddress address) throws IOException {
    return new Metrics(address);
  }

  /** Fails with the same sentence as {@link #start} if the address cannot be bound now. */
  static void checkFree(InetSocketAddress address) throws IOException {
    try (ServerSocket s = new ServerSocket()) {
      s.bind(address);
    } catch (IOException e) {
      throw inUse(address, e);
    }
  }

  private static IOException inUse(InetSocketAddress address, IOException e) {
    String where = (address.getAddress().getHostAddress().contains(":")
        ? "[" + address.getAddress().getHostAddress() + "]"
        : address.getAddress().getHostAddress()) + ":" + address.getPort();
    if (e instanceof BindException && String.valueOf(e.getMessage()).contains("in use")) {
      throw new UsageException("metrics address " + where + " is in use; pick a free port"
          + " (-o metrics=HOST:PORT or --metrics HOST:PORT) or stop what listens there");
    }
    if (e instanceof BindException) {
      throw new UsageException("metrics address " + where + " cannot be bound ("
          + e.getMessage() + "); give an address of this machine, e.g. 127.0.0.1:"
          + address.getPort());
    }
    return e;
  }

  int port() {
    return server.getPort();
  }

  InetSocketAddress address() {
    return address;
  }

  /** Registers the metrics of a mounted filesystem; scrapes before this see none. */
  void attach(Supplier<CacheStats> statsSource, Map<String, Object> mountInfo,
      WcfsFileSystem fs) {
    Supplier<CacheStats> stats = new Supplier<>() { // one snapshot serves a whole scrape
      private CacheStats last;
      private long at;

      @Override
      public synchronized CacheStats get() {
        long now = System.nanoTime();
        if (last == null || now - at > 100_000_000L) {
          last = statsSource.get();
          at = now;
        }
        return last;
      }
    };
    Info info = Info.builder().name("wcfs_mount").help("The mount this daemon serves; always 1")
        .labelNames("mountpoint", "backing", "cache", "backend").register(registry);
    info.addLabelValues(String.valueOf(mountInfo.get("mountpoint")),
        String.valueOf(mountInfo.get("backing")), String.valueOf(mountInfo.get("cache")),
        stats.get().commits().memory());

    gauge("wcfs_error", "1 once the cache memory failed (writes and fsyncs then fail with EIO,"
        + " reads go on), else 0", stats, s -> s.error() == null ? 0 : 1);
    gauge("wcfs_block_size_bytes", "Cache block size", stats, s -> s.space().blockSize());
    gauge("wcfs_blocks", "Cache blocks in all", stats, s -> s.space().blocks());
    gauge("wcfs_free_blocks", "Cache blocks free", stats, s -> s.space().freeBlocks());
    gauge("wcfs_dirty_blocks", "Blocks not yet written back", stats, s -> s.space().dirtyBlocks());
    gauge("wcfs_dirty_bytes", "Bytes not yet written back", stats,
        s -> (double) s.space().dirtyBlocks() * s.space().blockSize());
    gauge("wcfs_uncommitted_blocks", "Blocks written but not yet committed", stats,
        s -> s.space().uncommittedBlocks());
    gauge("wcfs_oldest_dirty_age_seconds", "Age of the oldest block not yet written back",
        stats, s -> s.space().oldestDirtyAgeMs() / 1e3);
    gauge("wcfs_writeback_blocks_in_flight", "Blocks being written back now", stats,
        s -> s.writeback().inFlightBlocks());
    gauge("wcfs_writers_waiting", "Writers waiting for free cache blocks now", stats,
        s -> s.space().writersWaiting());
    gauge("wcfs_commit_latency_p50_seconds", "Median commit latency over the last 4096"
        + " commits (the engine's own)", stats, s -> s.commits().p50Nanos() / 1e9);
    gauge("wcfs_commit_latency_p99_seconds", "99th percentile commit latency over the last"
        + " 4096 commits", stats, s -> s.commits().p99Nanos() / 1e9);
    gauge("wcfs_commit_latency_max_seconds", "Largest commit latency over the last 4096"
        + " commits", stats, s -> s.commits().maxNanos() / 1e9);
    gauge("wcfs_largest_write_request_bytes", "Largest write request the kernel sent (1 MiB"
        + " once the large-request negotiation took)", stats, s -> fs.largestWrite());

    counter("wcfs_written_back_blocks", "Blocks written back to the backing directory", stats,
        s -> s.writeback().writtenBackBlocks());
    counter("wcfs_written_back_bytes", "Bytes written back to the backing directory", stats,
        s -> (double) s.writeback().writtenBackBlocks() * s.space().blockSize());
    counter("wcfs_writeback_errors", "Backing-store failures during writeback (retried)",
        stats, s -> s.writeback().errors());
    counter("wcfs_inode_hint_mismatches", "Files recovered at a path that now shows another"
        + " inode number", stats, s -> s.recovery().inodeHintMismatches());
    counter("wcfs_lost_and_found_files", "Files whose data went to .wcfs-lost+found", stats,
        s -> s.recovery().lostAndFoundFiles());
    gauge("wcfs_journal_pending_records", "Namespace records not yet applied to the backing"
        + " directory", stats, s -> s.journal().pending());
    counter("wcfs_journal_applied_records", "Namespace records applied to the backing directory",
        stats, s -> s.journal().applied());
    counter("wcfs_creates_elided", "Files created and removed before writeback reached them"
        + " (they never touched the backing directory)", stats, s -> s.journal().createsElided());
    counter("wcfs_stray_files_taken_back", "Files the namespace overlay showed after the engine"
        + " had dropped them (a bug, logged; taken back, nothing lost)", stats,
        s -> s.journal().strayFiles());
    counter("wcfs_reads", "Block reads", stats, s -> s.io().reads());
    counter("wcfs_read_hits", "Block reads served from the cache", stats, s -> s.io().readHits());
    counter("wcfs_writes", "Block writes", stats, s -> s.io().writes());
    counter("wcfs_write_hits_uncommitted", "Block writes over an uncommitted block (in place)",
        stats, s -> s.io().writeHitsUncommitted());
    counter("wcfs_write_hits_committed", "Block writes over a committed block (copy-on-write)",
        stats, s -> s.io().writeHitsCommitted());
    counter("wcfs_writes_allocated", "Block writes that took a free block", stats,
        s -> s.io().writesAllocated());
    counter("wcfs_writes_blocked_on_freelist", "Writers that had to wait for writeback", stats,
        s -> s.writeback().writesBlockedOnFreelist());
    counter("wcfs_unlinked_files_spilled", "Files unlinked while open whose cached blocks were"
        + " moved to the backing filesystem to make room", stats,
        s -> s.writeback().spilledFiles());
    counter("wcfs_commits", "Commits of the cache (fsync, fdatasync, O_SYNC, autocommit)",
        stats, s -> s.commits().flushes());
    counter("wcfs_device_flushes", "Device cache flushes the cache memory issued (fdatasyncs of"
        + " a cache file on a disk; 0 on pmem)", stats, s -> s.commits().deviceFlushes());

    Xattrs x = fs.xattrs();
    counter("wcfs_fuse_getxattr_requests", "GETXATTR requests from the kernel", stats,
        s -> FuseWorker.getxattrRequests());
    counter("wcfs_capability_probes", "getxattr(security.capability) requests (the kernel's"
        + " check before writes)", stats, s -> x.capabilityProbes());
    counter("wcfs_capability_probes_from_memory", "security.capability probes answered from"
        + " memory, without a backing call", stats, s -> x.capabilityProbesFromMemory());
    counter("wcfs_capabilities_cleared", "File capabilities removed because their file was"
        + " written, truncated or chowned", stats, s -> x.capabilitiesCleared());

    Histogram commits = Histogram.builder().name("wcfs_commit_latency_seconds")
        .help("Commits callers waited for (fsync, fdatasync, O_SYNC writes), from the request"
            + " to the durable commit")
        .classicOnly().classicUpperBounds(COMMIT_BUCKETS).register(registry);
    fs.observeCommits(nanos -> commits.observe(nanos / 1e9));
  }

  private void gauge(String name, String help, Supplier<CacheStats> stats,
      ToDoubleFunction<CacheStats> value) {
    GaugeWithCallback.builder().name(name).help(help)
        .callback(cb -> cb.call(value.applyAsDouble(stats.get()))).register(registry);
  }

  private void counter(String name, String help, Supplier<CacheStats> stats,
      ToDoubleFunction<CacheStats> value) {
    CounterWithCallback.builder().name(name).help(help)
        .callback(cb -> cb.call(value.applyAsDouble(stats.get()))).register(registry);
  }

  @Override
  public void close() {
    server.close();
    executor.shutdownNow();
  }
}
