package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The Prometheus endpoint of a real mount, scraped over HTTP. */
@Timeout(300)
class MetricsTest {
  Path tmp;
  Path backing;
  Path mnt;
  WcfsProcess wcfs;

  @BeforeEach
  void setUp() throws Exception {
    tmp = Files.createTempDirectory("wcfs-MetricsTest");
    backing = Files.createDirectories(tmp.resolve("backing"));
    mnt = Files.createDirectories(tmp.resolve("mnt"));
    wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir("metrics"), backing, mnt);
  }

  @AfterEach
  void tearDown() throws Exception {
    try {
      wcfs.close();
    } finally {
      WcfsProcess.deleteTree(wcfs.cacheDir);
      WcfsProcess.deleteTree(tmp);
    }
  }

  private static int freePort() throws Exception {
    try (ServerSocket s = new ServerSocket()) {
      s.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      return s.getLocalPort();
    }
  }

  private static HttpResponse<String> scrape(int port) throws Exception {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics"))
        .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
  }

  /** name{labels} -> value of every sample line. */
  private static Map<String, Double> samples(String body) {
    Map<String, Double> m = new TreeMap<>();
    for (String line : body.lines().toList()) {
      if (line.startsWith("#") || line.isBlank()) {
        continue;
      }
      int sp = line.lastIndexOf(' ');
      m.put(line.substring(0, sp), Double.parseDouble(line.substring(sp + 1)));
    }
    return m;
  }

  /**
   * Whether the sockets listening on {@code port} all listen on 127.0.0.1 (/proc/net/tcp and
   * tcp6, little-endian hex; the JDK may bind an IPv6 socket to the v4-mapped address).
   */
  private static boolean listensOnLoopbackOnly(int port) throws Exception {
    String local = String.format(Locale.ROOT, "0100007F:%04X", port);
    String any = String.format(Locale.ROOT, ":%04X", port);
    boolean loopback = false;
    for (String file : List.of("/proc/net/tcp", "/proc/net/tcp6")) {
      for (String line : Files.readAllLines(Path.of(file))) {
        String[] f = line.trim().split("\\s+");
        if (f.length > 3 && f[3].equals("0A") && f[1].endsWith(any)) { // 0A: LISTEN
          if (!f[1].equals(local) && !f[1].equals("0000000000000000FFFF0000" + local)) {
            return false;
          }
          loopback = true;
        }
      }
    }
    return loopback;
  }

  @Test
  @DisplayName("-o metrics=PORT serves every status field as wcfs_* in the text format, on"
      + " loopback only, and the numbers follow the mount")
  void scrape() throws Exception {
    int port = freePort();
    wcfs.mount("-o", "metrics=" + port);
    assertTrue(listensOnLoopbackOnly(port), "not on 127.0.0.1:" + port + " alone");
    int fsyncs = 25;
    try (FileChannel ch = FileChannel.open(mnt.resolve("f"), StandardOpenOption.CREATE,
        StandardOpenOption.WRITE)) {
      for (int i = 0; i < fsyncs; i++) {
        ch.write(ByteBuffer.allocate(4096), i * 4096L);
        ch.force(false);
      }
    }
    HttpResponse<String> r = scrape(port);
    assertEquals(200, r.statusCode());
    assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain"),
        r.headers().toString());
    Map<String, Double> s = samples(r.body());
    // every numeric status field has its metric
    for (String name : List.of("wcfs_error", "wcfs_block_size_bytes", "wcfs_blocks",
        "wcfs_free_blocks", "wcfs_dirty_blocks", "wcfs_dirty_bytes", "wcfs_uncommitted_blocks",
        "wcfs_oldest_dirty_age_seconds", "wcfs_writeback_blocks_in_flight",
        "wcfs_writers_waiting", "wcfs_commit_latency_p50_seconds",
        "wcfs_commit_latency_p99_seconds", "wcfs_commit_latency_max_seconds",
        "wcfs_largest_write_request_bytes", "wcfs_written_back_blocks_total",
        "wcfs_written_back_bytes_total", "wcfs_writeback_errors_total",
        "wcfs_inode_hint_mismatches_total", "wcfs_lost_and_found_files_total",
        "wcfs_reads_total", "wcfs_read_hits_total", "wcfs_writes_total",
        "wcfs_write_hits_uncommitted_total", "wcfs_write_hits_committed_total",
        "wcfs_writes_allocated_total", "wcfs_writes_blocked_on_freelist_total",
        "wcfs_commits_total", "wcfs_device_flushes_total", "wcfs_fuse_getxattr_requests_total",
        "wcfs_capability_probes_total", "wcfs_capability_probes_from_memory_total",
        "wcfs_capabilities_cleared_total", "wcfs_commit_latency_seconds_count",
        "wcfs_commit_latency_seconds_sum")) {
      assertTrue(s.containsKey(name), name + " missing from:\n" + r.body());
    }
    assertTrue(s.keySet().stream().allMatch(k -> k.startsWith("wcfs_")), s.keySet().toString());
    assertTrue(r.body().contains("# TYPE wcfs_commit_latency_seconds histogram"), r.body());
    assertTrue(s.get("wcfs_commit_latency_seconds_count") >= fsyncs, s.toString());
    assertEquals(s.get("wcfs_commit_latency_seconds_count"),
        s.get("wcfs_commit_latency_seconds_bucket{le=\"+Inf\"}"));
    assertTrue(s.get("wcfs_commits_total") >= fsyncs, s.toString());
    assertTrue(s.get("wcfs_writes_total") >= fsyncs, s.toString());
    assertEquals(4096.0, s.get("wcfs_block_size_bytes"));
    assertEquals(1.0, s.get("wcfs_mount_info{backend=\"" + backend() + "\",backing=\""
        + backing.toRealPath() + "\",cache=\"" + wcfs.cacheDir.toRealPath()
        .resolve("wcfs.cache") + "\",mountpoint=\"" + mnt.toRealPath() + "\"}"), r.body());
    // the same numbers as status, once the mount is quiet
    assertEquals((double) wcfs.statusNumber("blocks"), s.get("wcfs_blocks"));
    assertEquals((double) wcfs.statusNumber("flushes"), samples(scrape(port).body())
        .get("wcfs_commits_total"));
    assertEquals((double) wcfs.statusNumber("dirty_bytes"), samples(scrape(port).body())
        .get("wcfs_dirty_bytes"));
    assertEquals((double) wcfs.statusNumber("device_flushes"), samples(scrape(port).body())
        .get("wcfs_device_flushes_total"));

    wcfs.umount();
    try (ServerSocket again = new ServerSocket()) { // the daemon let the port go
      again.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
    }
  }

  private String backend() throws Exception {
    Matcher m = Pattern.compile("\"backend\": \"([^\"]*)\"").matcher(WcfsProcess.run(30,
        "status", "--json", mnt.toString()).out());
    assertTrue(m.find());
    return m.group(1);
  }

  @Test
  @DisplayName("no metrics unless asked: nothing listens for a mount without -o metrics")
  void offByDefault() throws Exception {
    wcfs.mount();
    long pid = wcfs.daemonPid();
    // the daemon's sockets: none of them a TCP listener
    Map<String, Boolean> listening = new TreeMap<>();
    for (String file : List.of("/proc/net/tcp", "/proc/net/tcp6")) {
      for (String line : Files.readAllLines(Path.of(file))) {
        String[] f = line.trim().split("\\s+");
        if (f.length > 9 && f[3].equals("0A")) {
          listening.put(f[9], true); // inode of the listening socket
        }
      }
    }
    try (var fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
      for (Path fd : fds.toList()) {
        String target;
        try {
          target = Files.readSymbolicLink(fd).toString();
        } catch (java.io.IOException e) {
          continue;
        }
        if (target.startsWith("socket:[")) {
          String inode = target.substring(8, target.length() - 1);
          assertTrue(!listening.containsKey(inode), "the daemon listens on TCP (" + fd + ")");
        }
      }
    }
    String status = WcfsProcess.run(30, "status", mnt.toString()).out();
    assertTrue(status.lines().anyMatch(l -> l.matches("metrics\\s+off")), status);
  }
}
