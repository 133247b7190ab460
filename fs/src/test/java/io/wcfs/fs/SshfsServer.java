package io.wcfs.fs;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.ProcessBuilder.Redirect;
import java.net.ServerSocket;
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
 * A real network filesystem for tests: an sshd of our own on 127.0.0.1 (its own host key,
 * client key and authorized_keys in a temporary directory, public keys only, internal-sftp),
 * and an sshfs mount of one of its directories. Every external command is bounded in time, and
 * a watchdog kills sshfs and sshd if the whole thing outlives its deadline: killing sshfs is
 * what unblocks I/O stuck on a hung sshfs mount (a lazy unmount does not), so a hung mount
 * fails the test instead of hanging the build. {@link #close} always unmounts and stops sshd.
 */
final class SshfsServer implements AutoCloseable {
  private static final String SSHD = "/usr/sbin/sshd";
  private static final long MOUNT_SECONDS = 30;
  private static final long COMMAND_SECONDS = 30;

  /** The directory sshd serves: reading it directly is the server's own view. */
  final Path serverDir;
  /** Where {@link #serverDir} is mounted over sshfs. */
  final Path mountpoint;
  private final Path work;
  private final Path sshdLog;
  private final Path sshfsLog;
  private final ScheduledExecutorService watchdog;
  private volatile boolean watchdogFired;
  private volatile Process sshd;
  private volatile Process sshfs;
  private int port;

  private SshfsServer(Path dir) throws IOException {
    work = Files.createDirectories(dir.resolve("ssh")).toRealPath();
    serverDir = Files.createDirectories(dir.resolve("server")).toRealPath();
    mountpoint = Files.createDirectories(dir.resolve("sshfs")).toRealPath();
    sshdLog = work.resolve("sshd.log");
    sshfsLog = work.resolve("sshfs.log");
    watchdog = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "sshfs-watchdog");
      t.setDaemon(true);
      return t;
    });
  }

  /**
   * Fails (never skips) unless sshd, sshfs and their helpers are installed and we are root:
   * sshd logs in as root, and an sshfs mount without allow_other admits only its mounter, root,
   * who also runs the wcfs daemon.
   */
  static void requireTools() throws IOException {
    List<String> missing = new ArrayList<>();
    if (!Files.isExecutable(Path.of(SSHD))) {
      missing.add(SSHD + " (openssh-server)");
    }
    for (String cmd : List.of("sshfs", "ssh", "ssh-keygen", "fusermount")) {
      if (onPath(cmd) == null) {
        missing.add(cmd);
      }
    }
    if (!missing.isEmpty()) {
      throw new AssertionError("NetworkBackingTest needs " + String.join(", ", missing)
          + ": run `./wcfs test`, which installs sshfs and openssh-server");
    }
    Object uid = Files.getAttribute(Path.of("/proc/self"), "unix:uid");
    if (!Integer.valueOf(0).equals(uid)) {
      throw new AssertionError("NetworkBackingTest must run as root (uid " + uid + "): its sshd"
          + " logs in as root and the wcfs daemon must be the sshfs mount's owner");
    }
  }

  private static Path onPath(String cmd) {
    for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
      Path p = Path.of(dir.isEmpty() ? "." : dir, cmd);
      if (Files.isExecutable(p)) {
        return p;
      }
    }
    return null;
  }

  /**
   * Starts sshd under {@code dir} (not yet mounted: see {@link #mount}). After
   * {@code deadline} the watchdog kills sshfs and sshd, failing whatever waits on them.
   */
  static SshfsServer start(Path dir, Duration deadline) throws IOException, InterruptedException {
    requireTools();
    SshfsServer s = new SshfsServer(dir);
    try {
      s.watchdog.schedule(s::fire, deadline.toMillis(), TimeUnit.MILLISECONDS);
      s.startSshd();
      return s;
    } catch (IOException | InterruptedException | RuntimeException | Error e) {
      s.close();
      throw e;
    }
  }

  private void fire() {
    watchdogFired = true;
    System.err.println("SshfsServer: deadline passed; killing sshfs and sshd");
    Process f = sshfs;
    if (f != null) {
      f.destroyForcibly();
    }
    Process d = sshd;
    if (d != null) {
      d.descendants().forEach(ProcessHandle::destroyForcibly);
      d.destroyForcibly();
    }
  }

  private void startSshd() throws IOException, InterruptedException {
    Path hostKey = work.resolve("host_key");
    Path clientKey = work.resolve("client_key");
    Path authorized = work.resolve("authorized_keys");
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wcfs-test-host", "-f",
        hostKey.toString());
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wcfs-test-client", "-f",
        clientKey.toString());
    Files.copy(work.resolve("client_key.pub"), authorized);
    // sshd refuses to start without its privilege separation directory; Debian's init script
    // creates it, and we do not run that.
    Files.createDirectories(Path.of("/run/sshd"));
    for (int attempt = 1; ; attempt++) {
      try (ServerSocket probe = new ServerSocket(0, 1,
          java.net.InetAddress.getLoopbackAddress())) {
        port = probe.getLocalPort();
      }
      Path config = work.resolve("sshd_config");
      Files.writeString(config, String.join("\n",
          "ListenAddress 127.0.0.1",
          "Port " + port,
          "HostKey " + hostKey,
          "AuthorizedKeysFile " + authorized,
          "PubkeyAuthentication yes",
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "PermitRootLogin prohibit-password",
          "StrictModes no",
          // PAM's session modules (pam_loginuid) fail in containers; keys need no PAM.
          "UsePAM no",
          "PidFile none",
          "Subsystem sftp internal-sftp",
          ""));
      Files.writeString(sshdLog, "--- sshd on port " + port + " ---\n",
          java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
      sshd = new ProcessBuilder(SSHD, "-D", "-e", "-f", config.toString())
          .redirectErrorStream(true).redirectOutput(Redirect.appendTo(sshdLog.toFile())).start();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
      while (System.nanoTime() < deadline && sshd.isAlive()
          && !read(sshdLog).contains("Server listening on 127.0.0.1 port " + port)) {
        Thread.sleep(20);
      }
      if (read(sshdLog).contains("Server listening on 127.0.0.1 port " + port)
          && sshd.isAlive()) {
        return;
      }
      stopSshd();
      if (attempt < 3 && read(sshdLog).contains("Address already in use")) {
        continue; // someone took the free port between our probe and sshd's bind
      }
      throw new AssertionError("sshd did not start listening on 127.0.0.1:" + port
          + " within 20 s" + logs());
    }
  }

  /** Mounts {@link #serverDir} at {@link #mountpoint}; fails with sshfs's and sshd's logs. */
  void mount() throws IOException, InterruptedException {
    if (isMounted()) {
      throw new IllegalStateException(mountpoint + " is already mounted");
    }
    Files.writeString(sshfsLog, "--- sshfs mount ---\n",
        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    // -f: sshfs stays our child, so we can kill it; its ssh options: our key only, no host key
    // checks (the host key is new each run), never prompt, bounded connect. Caching options
    // are sshfs's defaults.
    String opts = String.join(",",
        "IdentityFile=" + work.resolve("client_key"),
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "ConnectTimeout=10",
        "LogLevel=ERROR",
        "port=" + port);
    Process p = new ProcessBuilder("sshfs", "-f", "-o", opts,
        "root@127.0.0.1:" + serverDir, mountpoint.toString())
        .redirectErrorStream(true).redirectOutput(Redirect.appendTo(sshfsLog.toFile())).start();
    sshfs = p;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(MOUNT_SECONDS);
    while (!isMounted()) {
      if (!p.isAlive() || System.nanoTime() > deadline || watchdogFired) {
        String why = p.isAlive() ? "did not mount within " + MOUNT_SECONDS + " s"
            : "exited with " + p.exitValue();
        unmount();
        throw new AssertionError("sshfs of " + serverDir + " at " + mountpoint + " " + why
            + logs());
      }
      Thread.sleep(20);
    }
  }

  /** Unmounts: fusermount -u, lazily if that fails; then sshfs must exit, or is killed. */
  void unmount() throws IOException, InterruptedException {
    if (isMounted()) {
      String out = run(false, "fusermount", "-u", mountpoint.toString());
      if (isMounted()) {
        System.err.println("SshfsServer: fusermount -u " + mountpoint + " failed (" + out.trim()
            + "); unmounting lazily");
        run(false, "fusermount", "-u", "-z", mountpoint.toString());
      }
    }
    Process p = sshfs;
    if (p != null) {
      if (!p.waitFor(COMMAND_SECONDS, TimeUnit.SECONDS)) {
        System.err.println("SshfsServer: sshfs did not exit " + COMMAND_SECONDS
            + " s after its unmount; killed");
        p.destroyForcibly();
        p.waitFor(COMMAND_SECONDS, TimeUnit.SECONDS);
      }
      sshfs = null;
    }
    if (isMounted()) {
      throw new AssertionError(mountpoint + " is still mounted after fusermount -u -z" + logs());
    }
  }

  /** Whether {@link #mountpoint} is a mount point now (sshfs or anything else). */
  boolean isMounted() throws IOException {
    String mp = mountpoint.toString();
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String[] f = line.split(" ");
      if (f.length > 4 && f[4].equals(mp)) {
        return true;
      }
    }
    return false;
  }

  /** sshd's and sshfs's output so far, for failure messages. */
  String logs() {
    return (watchdogFired ? "\n(the watchdog killed sshfs and sshd at its deadline)" : "")
        + "\n--- sshd log ---\n" + read(sshdLog) + "--- sshfs log ---\n" + read(sshfsLog);
  }

  private static String read(Path p) {
    try {
      return Files.exists(p) ? Files.readString(p, StandardCharsets.UTF_8) : "";
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private String run(String... cmd) throws IOException, InterruptedException {
    return run(true, cmd);
  }

  /** Runs a short command, bounded in time; its output, and if {@code check} exit 0. */
  private String run(boolean check, String... cmd) throws IOException, InterruptedException {
    Path out = Files.createTempFile(work, "cmd", ".txt");
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
          .redirectOutput(out.toFile()).start();
      if (!p.waitFor(COMMAND_SECONDS, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError(String.join(" ", cmd) + " did not finish in "
            + COMMAND_SECONDS + " s");
      }
      String text = read(out);
      if (check && p.exitValue() != 0) {
        throw new AssertionError(String.join(" ", cmd) + " exited " + p.exitValue() + ": "
            + text);
      }
      return text;
    } finally {
      Files.deleteIfExists(out);
    }
  }

  private void stopSshd() throws InterruptedException {
    Process d = sshd;
    if (d == null) {
      return;
    }
    // Each connection has its own sshd child, which outlives a SIGTERM to the listener.
    List<ProcessHandle> children = d.descendants().toList();
    d.destroy();
    if (!d.waitFor(10, TimeUnit.SECONDS)) {
      d.destroyForcibly();
      d.waitFor(10, TimeUnit.SECONDS);
    }
    for (ProcessHandle c : children) {
      c.destroyForcibly();
    }
    sshd = null;
  }

  /** Unmounts (lazily if it must) and stops sshd, whatever happened. */
  @Override
  public void close() throws IOException, InterruptedException {
    try {
      unmount();
    } finally {
      try {
        stopSshd();
      } finally {
        watchdog.shutdownNow();
      }
    }
  }
}
