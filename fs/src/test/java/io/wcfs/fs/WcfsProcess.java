package io.wcfs.fs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Runs the real {@code wcfs} command line in a child JVM (the test classpath), each run bounded
 * in time, and owns a mount for a test: {@link #close} always unmounts, lazily if it must.
 */
final class WcfsProcess implements AutoCloseable {
  /** What a finished wcfs command printed. */
  record Result(int exitCode, String out, String err) {
    String all() {
      return out + err;
    }
  }

  /** Extra environment for the daemon (test-only modes). */
  final java.util.Map<String, String> env = new java.util.HashMap<>();
  final Path cacheDir;
  final Path backing;
  final Path mountpoint;
  private boolean mounted;

  WcfsProcess(Path cacheDir, Path backing, Path mountpoint) {
    this.cacheDir = cacheDir;
    this.backing = backing;
    this.mountpoint = mountpoint;
  }

  /** A cache directory on tmpfs, the stand-in for persistent memory. */
  static Path tmpfsCacheDir(String name) throws IOException {
    Path dir = Path.of("/dev/shm", "wcfs-test-" + ProcessHandle.current().pid() + "-" + name
        + "-" + System.nanoTime());
    return Files.createDirectories(dir);
  }

  static void deleteTree(Path dir) throws IOException {
    if (dir == null || !Files.exists(dir)) {
      return;
    }
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    }
  }

  static Result run(long timeoutSeconds, String... args) throws IOException, InterruptedException {
    return run(java.util.Map.of(), timeoutSeconds, args);
  }

  static Result run(java.util.Map<String, String> env, long timeoutSeconds, String... args)
      throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"), Main.class.getName()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("PMEM_IS_PMEM_FORCE", "1");
    pb.environment().putAll(env);
    Path out = Files.createTempFile("wcfs-out", ".txt");
    Path err = Files.createTempFile("wcfs-err", ".txt");
    pb.redirectOutput(out.toFile());
    pb.redirectError(err.toFile());
    Process p = pb.start();
    try {
      if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError("wcfs " + String.join(" ", args) + " did not finish in "
            + timeoutSeconds + " s");
      }
      return new Result(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8),
          Files.readString(err, StandardCharsets.UTF_8));
    } finally {
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
    }
  }

  /** Mounts (daemonized, as a user would); fails the test with wcfs's own message if refused. */
  WcfsProcess mount(String... extra) throws IOException, InterruptedException {
    List<String> args = new ArrayList<>(List.of("mount"));
    if (!List.of(extra).contains("--cache-size")) {
      args.addAll(List.of("--cache-size", "64M"));
    }
    // -Dwcfs.fuseTransport=uring runs the mount tests over another FUSE transport
    String transport = System.getProperty("wcfs.fuseTransport");
    if (transport != null && !transport.isEmpty()
        && !List.of(extra).contains("--fuse-transport")) {
      args.addAll(List.of("--fuse-transport", transport));
    }
    args.addAll(List.of(extra));
    args.addAll(List.of(cacheDir.toString(), backing.toString(), mountpoint.toString()));
    Result r = run(env, 60, args.toArray(String[]::new));
    if (r.exitCode() != 0) {
      throw new AssertionError("mount failed (" + r.exitCode() + "): " + r.all() + log());
    }
    mounted = true;
    return this;
  }

  void markUnmounted() {
    mounted = false;
  }

  void markMounted() {
    mounted = true;
  }

  String log() {
    try {
      Path log = cacheDir.resolve("wcfs.log");
      return Files.exists(log) ? "\n--- daemon log ---\n" + Files.readString(log) : "";
    } catch (IOException e) {
      return "";
    }
  }

  long daemonPid() throws IOException, InterruptedException {
    return statusNumber("pid");
  }

  /** A numeric field of {@code wcfs status --json} for this mount. */
  long statusNumber(String field) throws IOException, InterruptedException {
    Result r = run(30, "status", "--json", mountpoint.toString());
    java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"" + field + "\": (\\d+)")
        .matcher(r.out());
    if (!m.find()) {
      throw new AssertionError("no " + field + " in status: " + r.all());
    }
    return Long.parseLong(m.group(1));
  }

  /** SIGKILL the daemon, then clear the dead mount; the cache keeps what was committed. */
  void kill9() throws IOException, InterruptedException {
    kill9(daemonPid());
  }

  /**
   * {@link #kill9()} of a daemon whose pid was read beforehand (after the mount), so the kill
   * lands when the test chose, not a status command's JVM start-up later.
   */
  void kill9(long pid) throws IOException, InterruptedException {
    ProcessHandle h = ProcessHandle.of(pid).orElseThrow();
    new ProcessBuilder("kill", "-9", Long.toString(pid)).start().waitFor();
    h.onExit().join();
    lazyUnmount();
    mounted = false;
  }

  void umount() throws IOException, InterruptedException {
    Result r = run(300, "umount", mountpoint.toString());
    if (r.exitCode() != 0) {
      throw new AssertionError("umount failed: " + r.all() + log());
    }
    mounted = false;
  }

  private void lazyUnmount() throws IOException, InterruptedException {
    new ProcessBuilder("fusermount", "-u", "-z", mountpoint.toString()).redirectErrorStream(true)
        .start().waitFor(30, TimeUnit.SECONDS);
  }

  /** Always leaves nothing mounted, even after a failed test. */
  @Override
  public void close() throws IOException, InterruptedException {
    if (mounted) {
      try {
        umount();
      } catch (AssertionError | IOException e) {
        lazyUnmount();
        throw e;
      } finally {
        mounted = false;
      }
    }
  }
}
