package io.wcfs.fs;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * A real GlusterFS volume for tests: a single-node volume whose brick is a temporary directory
 * on this machine, mounted by several GlusterFS clients in directories of their own, each
 * client standing in for another machine (its own connection, caches and locks).
 *
 * <p>glusterd is started (with a pid file of ours) only if none answers, and then stopped
 * again. GlusterFS refuses 127.0.0.1 as a brick host, so the brick is on this machine's host
 * name. Every command is bounded in time; {@link #close} unmounts the clients (lazily, killing
 * the client process, if a plain unmount does not finish), stops and deletes the volume and
 * stops the glusterd it started. A watchdog kills the client processes once the deadline
 * passes: I/O stuck on a hung GlusterFS mount then fails instead of hanging the build.
 */
final class GlusterVolume implements AutoCloseable {
  private static final long COMMAND_SECONDS = 60;
  private static final String PREFIX = "wcfstest";

  final String name;
  final String host;
  private final Path work;
  private final Path brick;
  private final List<Path> clients = new ArrayList<>();
  private final ScheduledExecutorService watchdog;
  private volatile boolean watchdogFired;
  private Process glusterd;
  private boolean created;

  private GlusterVolume(Path dir) throws IOException {
    work = Files.createDirectories(dir.resolve("gluster")).toRealPath();
    brick = work.resolve("brick");
    name = PREFIX + ProcessHandle.current().pid() + "x" + Long.toString(System.nanoTime()
        % 1_000_000_000L, 36);
    host = Files.readString(Path.of("/proc/sys/kernel/hostname")).trim();
    watchdog = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "gluster-watchdog");
      t.setDaemon(true);
      return t;
    });
  }

  /** Fails (never skips) unless GlusterFS is installed and we are root. */
  static void requireTools() throws IOException {
    List<String> missing = new ArrayList<>();
    for (String cmd : List.of("glusterd", "gluster", "mount.glusterfs")) {
      if (onPath(cmd) == null) {
        missing.add(cmd);
      }
    }
    if (!missing.isEmpty()) {
      throw new AssertionError("GlusterFS tests need " + String.join(", ", missing) + ": run"
          + " `./wcfs test`, which installs glusterfs-server and glusterfs-client");
    }
    Object uid = Files.getAttribute(Path.of("/proc/self"), "unix:uid");
    if (!Integer.valueOf(0).equals(uid)) {
      throw new AssertionError("GlusterFS tests must run as root (uid " + uid + ")");
    }
  }

  private static Path onPath(String cmd) {
    String path = System.getenv().getOrDefault("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin";
    for (String dir : path.split(":")) {
      Path p = Path.of(dir.isEmpty() ? "." : dir, cmd);
      if (Files.isExecutable(p)) {
        return p;
      }
    }
    return null;
  }

  /**
   * A started volume under {@code dir} with {@code nClients} client mounts. After {@code
   * deadline} the watchdog kills the clients.
   */
  static GlusterVolume start(Path dir, int nClients, Duration deadline)
      throws IOException, InterruptedException {
    requireTools();
    GlusterVolume v = new GlusterVolume(dir);
    try {
      v.watchdog.schedule(v::fire, deadline.toMillis(), TimeUnit.MILLISECONDS);
      v.startGlusterd();
      v.removeLeftovers();
      v.gluster("volume", "create", v.name, v.host + ":" + v.brick, "force");
      v.created = true;
      v.gluster("volume", "start", v.name);
      for (int i = 0; i < nClients; i++) {
        Path mp = Files.createDirectories(v.work.resolve("client" + (i + 1))).toRealPath();
        v.clients.add(mp);
        v.mount(i);
      }
      return v;
    } catch (IOException | InterruptedException | RuntimeException | Error e) {
      v.close();
      throw e;
    }
  }

  /** Where client {@code i} (0-based) mounts the volume: "machine" i's view of it. */
  Path client(int i) {
    return clients.get(i);
  }

  private void fire() {
    watchdogFired = true;
    System.err.println("GlusterVolume: deadline passed; killing the GlusterFS clients of "
        + name);
    for (Path mp : clients) {
      clientProcess(mp).forEach(ProcessHandle::destroyForcibly);
    }
  }

  private void startGlusterd() throws IOException, InterruptedException {
    if (run(15, "gluster", "--mode=script", "volume", "list").exit == 0) {
      return; // one is running already: use it, leave it running
    }
    Path pidFile = work.resolve("glusterd.pid");
    // -N: stay in the foreground, our child, so that we stop exactly the one we started.
    glusterd = new ProcessBuilder("glusterd", "-N", "-p", pidFile.toString())
        .redirectErrorStream(true).redirectOutput(work.resolve("glusterd.out").toFile())
        .start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (run(15, "gluster", "--mode=script", "volume", "list").exit != 0) {
      if (!glusterd.isAlive() || System.nanoTime() > deadline) {
        throw new AssertionError("glusterd did not start answering within 30 s: "
            + read(work.resolve("glusterd.out")));
      }
      Thread.sleep(200);
    }
  }

  /** Volumes of earlier test runs killed before their cleanup, whose bricks are gone. */
  private void removeLeftovers() throws IOException, InterruptedException {
    for (String v : run(COMMAND_SECONDS, "gluster", "--mode=script", "volume", "list")
        .out.split("\n")) {
      v = v.trim();
      if (!v.startsWith(PREFIX)) {
        continue;
      }
      String info = run(COMMAND_SECONDS, "gluster", "--mode=script", "volume", "info", v)
          .out;
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("Brick1: [^:]+:(\\S+)")
          .matcher(info);
      if (m.find() && !Files.exists(Path.of(m.group(1)))) {
        run(COMMAND_SECONDS, "gluster", "--mode=script", "volume", "stop", v, "force");
        run(COMMAND_SECONDS, "gluster", "--mode=script", "volume", "delete", v);
      }
    }
  }

  /** Mounts client {@code i} (after {@link #unmount}, as a machine remounting the volume). */
  void mount(int i) throws IOException, InterruptedException {
    Path mp = clients.get(i);
    // No attribute or entry caching in the client (its default keeps both for 1 s): a reader
    // on the other "machine" that looked at a file before a flush would otherwise see its old
    // size for up to a second after it, which is the client's cache, not wcfs (README).
    Result r = run(COMMAND_SECONDS, "mount", "-t", "glusterfs", "-o",
        "attribute-timeout=0,entry-timeout=0", host + ":/" + name, mp.toString());
    if (r.exit != 0 || !isMounted(mp)) {
      throw new AssertionError("mount -t glusterfs " + host + ":/" + name + " " + mp + " failed"
          + " (" + r.exit + "): " + r.out);
    }
  }

  /** Unmounts client {@code i}; lazily, killing its client process, if that does not work. */
  void unmount(int i) throws IOException, InterruptedException {
    Path mp = clients.get(i);
    if (!isMounted(mp)) {
      return;
    }
    List<ProcessHandle> procs = clientProcess(mp);
    Result r = run(30, "umount", mp.toString());
    if (r.exit != 0 || isMounted(mp)) {
      System.err.println("GlusterVolume: umount " + mp + " failed (" + r.out.trim()
          + "); killing its client and unmounting lazily");
      procs.forEach(ProcessHandle::destroyForcibly);
      run(30, "umount", "-l", mp.toString());
    }
    for (ProcessHandle p : procs) { // the client exits once unmounted
      try {
        p.onExit().get(30, TimeUnit.SECONDS);
      } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
        p.destroyForcibly();
      }
    }
    if (isMounted(mp)) {
      throw new AssertionError(mp + " is still mounted after umount -l");
    }
  }

  /** The glusterfs client process serving {@code mp} (its command line ends with it). */
  private static List<ProcessHandle> clientProcess(Path mp) {
    return ProcessHandle.allProcesses().filter(p -> {
      String[] args = p.info().arguments().orElse(new String[0]);
      return p.info().command().orElse("").endsWith("glusterfs") && args.length > 0
          && args[args.length - 1].equals(mp.toString());
    }).toList();
  }

  static boolean isMounted(Path mp) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String[] f = line.split(" ");
      if (f.length > 4 && f[4].equals(mp.toString())) {
        return true;
      }
    }
    return false;
  }

  private void gluster(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of("gluster", "--mode=script"));
    cmd.addAll(List.of(args));
    Result r = run(COMMAND_SECONDS, cmd.toArray(String[]::new));
    if (r.exit != 0) {
      throw new AssertionError(String.join(" ", cmd) + " exited " + r.exit + ": " + r.out);
    }
  }

  private record Result(int exit, String out) {}

  /** Runs a command bounded in time; its exit code (-1 if it had to be killed) and output. */
  private Result run(long seconds, String... cmd)
      throws IOException, InterruptedException {
    Path out = Files.createTempFile(work, "cmd", ".txt");
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
          .redirectOutput(out.toFile()).start();
      if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        p.waitFor(10, TimeUnit.SECONDS);
        return new Result(-1, String.join(" ", cmd) + " did not finish in " + seconds + " s: "
            + read(out));
      }
      return new Result(p.exitValue(), read(out));
    } finally {
      Files.deleteIfExists(out);
    }
  }

  private static String read(Path p) {
    try {
      return Files.exists(p) ? Files.readString(p, StandardCharsets.UTF_8) : "";
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Unmounts every client, stops and deletes the volume, stops our glusterd; bounded. */
  @Override
  public void close() throws IOException, InterruptedException {
    Throwable first = null;
    for (int i = 0; i < clients.size(); i++) {
      try {
        unmount(i);
      } catch (IOException | RuntimeException | AssertionError e) {
        first = first == null ? e : first;
      }
    }
    try {
      if (created) {
        run(COMMAND_SECONDS, "gluster", "--mode=script", "volume", "stop", name, "force");
        run(COMMAND_SECONDS, "gluster", "--mode=script", "volume", "delete", name);
      }
    } finally {
      Process d = glusterd;
      if (d != null) {
        d.destroy();
        if (!d.waitFor(20, TimeUnit.SECONDS)) {
          d.destroyForcibly();
          d.waitFor(10, TimeUnit.SECONDS);
        }
      }
      watchdog.shutdownNow();
      try {
        WcfsProcess.deleteTree(brick);
      } catch (IOException e) {
        first = first == null ? e : first;
      }
    }
    if (first instanceof IOException e) {
      throw e;
    }
    if (first instanceof RuntimeException e) {
      throw e;
    }
    if (first instanceof Error e) {
      throw e;
    }
  }

  String describe() {
    return "volume " + name + " (brick " + host + ":" + brick + ", clients " + clients + ")"
        + (watchdogFired ? " — the watchdog killed its clients at the deadline" : "");
  }
}
