package io.wcfs.fs;

import io.wcfs.core.CacheConfig;
import io.wcfs.core.CacheLayout;
import io.wcfs.nativ.FlushStrategy;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code wcfs mount}: reads the options (flags and -o), checks the cache, backing directory
 * and mount point ({@link MountSpec}, errors that name the fix), then starts the daemon and
 * waits until it has mounted or says why not; with --foreground it is the daemon ({@link
 * Daemon#run}).
 */
@Command(name = "mount", description = {
    "Show BACKING at MOUNTPOINT, caching writes in CACHE.",
    "CACHE is a pmem device or file, or a directory to hold wcfs.cache; a new cache is",
    "created (--cache-size), a zero-filled one formatted, an existing one recovered."})
final class MountCommand implements Callable<Integer> {
  @Parameters(index = "0", paramLabel = "CACHE") Path cache;
  @Parameters(index = "1", paramLabel = "BACKING") Path backing;
  @Parameters(index = "2", paramLabel = "MOUNTPOINT") Path mountpoint;
  @Mixin Main.EngineOptions engine;

  @Option(names = "--cache-size", paramLabel = "SIZE",
      description = "Size of a new cache file (default: 1G, at most a quarter of free space).")
  String cacheSize;

  @Option(names = "-o", paramLabel = "OPTS", description = {"Mount options, comma-separated;"
      + " may repeat: every option above as name=value (block_size=8192, cleaner, ...),"
      + " metrics=HOST:PORT, noxattr, and FUSE's (allow_other, default_permissions, ro,"
      + " nosuid, nodev, noexec, ...). mount(8)'s own (noauto, _netdev, nofail, user, x-*)"
      + " are accepted and ignored."})
  List<String> fuseOptions = new ArrayList<>();

  @Option(names = "--metrics", paramLabel = "HOST:PORT", description = "Serve Prometheus"
      + " metrics at http://HOST:PORT/metrics (PORT alone: loopback). Off by default.")
  String metrics;

  @Option(names = "--no-xattr", description = "Answer extended-attribute calls with ENOSYS"
      + " (the kernel then stops asking) instead of passing them to the backing files.")
  boolean noXattr;

  @CommandLine.Spec CommandLine.Model.CommandSpec commandSpec;

  /** FUSE options left once -o was sorted (see {@link MountOptions}). */
  private List<String> passFuseOptions = new ArrayList<>();

  @Option(names = "--log-file", paramLabel = "FILE",
      description = "Daemon log (default: wcfs.log next to the cache file).")
  Path logFile;

  @Option(names = {"-f", "--foreground"}, description = "Stay attached; log to stderr.")
  boolean foreground;

  @Option(names = "--threads", paramLabel = "N", description = "Threads serving FUSE"
      + " requests (default: ${DEFAULT-VALUE}); concurrent reads from disk want several.")
  int threads = 8;

  @Option(names = "--spin-us", paramLabel = "MICROS", description = "How long an idle FUSE"
      + " thread polls for the next request before sleeping (default: ${DEFAULT-VALUE});"
      + " spares a wakeup per request under load, 0 turns it off.")
  int spinMicros = 50;

  @Option(names = "--fuse-transport", paramLabel = "auto|uring|dev", description = "How"
      + " FUSE requests reach wcfs: dev reads and writes /dev/fuse; uring takes them from"
      + " io_uring rings (Linux 6.14+; as root wcfs sets the fuse module's enable_uring"
      + " parameter to Y, machine-wide); auto uses uring where the kernel offers it. A kernel"
      + " without it falls back to /dev/fuse. Default: ${DEFAULT-VALUE}.")
  String fuseTransport = "dev";

  @Option(names = "--take-over", description = "Take BACKING over from a wcfs (on this or"
      + " another machine) that stopped without releasing it, e.g. on a dead machine: waits"
      + " out its lease; whatever its cache had not written back is lost to BACKING.")
  boolean takeOver;

  @Option(names = "--single-machine", description = "Mount although BACKING's filesystem has"
      + " no locks that span machines (sshfs, NFS with nolock): you promise that no other"
      + " machine writes there.")
  boolean singleMachine;

  @Option(names = "--lease", paramLabel = "MS", defaultValue = "30000", description = "Lease"
      + " of the claim on BACKING: renewed every quarter of it, writeback pauses when it was"
      + " not renewed for three quarters of it, --take-over waits it out (default"
      + " ${DEFAULT-VALUE} ms).")
  long leaseMs;

  @Option(names = "--ready-fd-stdout", hidden = true)
  boolean readyOnStdout;

  @Override
  public Integer call() throws Exception {
    MountSpec spec = validate();
    if (foreground) {
      PrintStream ready = readyOnStdout ? System.out : null;
      try {
        Daemon.run(spec, ready);
      } catch (IOException | RuntimeException e) {
        if (readyOnStdout) {
          System.out.println("ERROR " + Main.message(e));
          System.out.flush();
        }
        throw e;
      }
      return 0;
    }
    return spawnDaemon(spec);
  }

  /** Whether {@code --name} was given on the command line (not just defaulted). */
  private boolean given(String longName) {
    return commandSpec != null && commandSpec.commandLine().getParseResult() != null
        && commandSpec.commandLine().getParseResult().hasMatchedOption(longName);
  }

  /** -o name=value for wcfs's own options: the same as --name value. */
  private void applyMountOptions() {
    MountOptions.Parsed parsed = MountOptions.parse(fuseOptions, false);
    passFuseOptions = new ArrayList<>(parsed.fuse());
    for (Map.Entry<String, String> e : parsed.wcfs().entrySet()) {
      String name = e.getKey();
      String v = e.getValue();
      String flag = name.equals("noxattr") ? "--no-xattr" : "--" + name;
      if (!name.equals("cache") && given(flag)) {
        throw new UsageException(flag + " and -o " + name.replace('-', '_') + " are both"
            + " given; keep one");
      }
      switch (name) {
        case "cache" -> throw new UsageException("-o cache= names the cache in an fstab line;"
            + " for wcfs mount give CACHE as the first argument");
        case "cache-size" -> cacheSize = v;
        case "block-size" -> engine.blockSize = intOption(name, v);
        case "high-watermark" -> engine.highWatermark = intOption(name, v);
        case "low-watermark" -> engine.lowWatermark = intOption(name, v);
        case "writeback-jobs" -> engine.writebackJobs = intOption(name, v);
        case "autocommit-blocks" -> engine.autocommitBlocks = intOption(name, v);
        case "autocommit-time" -> engine.autocommitTime = intOption(name, v);
        case "max-age" -> engine.maxAge = intOption(name, v);
        case "flush-strategy" -> engine.flushStrategy = v;
        case "threads" -> threads = intOption(name, v);
        case "spin-us" -> spinMicros = intOption(name, v);
        case "fuse-transport" -> fuseTransport = v;
        case "log-file" -> logFile = Path.of(v);
        case "metrics" -> metrics = v;
        case "cleaner" -> engine.cleaner = true;
        case "noxattr" -> noXattr = true;
        case "take-over" -> takeOver = true;
        case "single-machine" -> singleMachine = true;
        case "lease" -> leaseMs = intOption(name, v);
        default -> throw new IllegalStateException("unhandled mount option " + name);
      }
    }
  }

  private static int intOption(String name, String v) {
    try {
      return Integer.parseInt(v.trim());
    } catch (NumberFormatException e) {
      throw new UsageException("mount option " + name.replace('-', '_') + "=" + v + " is not"
          + " a whole number; give e.g. " + name.replace('-', '_') + "=64");
    }
  }

  /** Every check that can fail before anything is touched, one sentence each. */
  MountSpec validate() throws IOException {
    applyMountOptions();
    java.net.InetSocketAddress metricsAddress = metrics == null ? null
        : MountOptions.metricsAddress(metrics);
    if (threads < 1 || threads > 64) {
      throw new UsageException("--threads " + threads + " is out of range: give 1 to 64");
    }
    FuseUring.Mode transportMode = FuseUring.Mode.parse(fuseTransport);
    if (spinMicros < 0 || spinMicros > 10_000) {
      throw new UsageException("--spin-us " + spinMicros + " is out of range: give 0 to 10000");
    }
    if (leaseMs < 1000 || leaseMs > 3_600_000) {
      throw new UsageException("--lease " + leaseMs + " is out of range: give 1000 to 3600000"
          + " ms");
    }
    if (!Files.exists(Path.of("/dev/fuse"))) {
      throw new UsageException("/dev/fuse is missing: load the fuse module (modprobe fuse)"
          + " or, in a container, pass --device /dev/fuse");
    }
    // Before anything looks at it: a dead mount answers every stat with ENOTCONN.
    clearDeadMount(mountpoint.toAbsolutePath().normalize());
    Path back = CacheSetup.realDirectory(backing, "backing directory",
        "create it or give an existing directory");
    Path mp = CacheSetup.realDirectory(mountpoint, "mount point",
        "create it (mkdir -p " + mountpoint + ") first");
    // In place (mount point = backing directory, as dm-writecache sits over its origin):
    // the daemon opens the backing root before it mounts over it. That directory is often a
    // filesystem's mount point itself, which is then no reason to refuse.
    boolean inPlace = mp.equals(back);
    String mounted = Mounts.typeAt(mp);
    if (mounted != null && (!inPlace || mounted.equals("fuse.wcfs"))) {
      throw new UsageException("mount point " + mp + " is already mounted (" + mounted
          + "); unmount it first or pick another directory");
    }
    if (!mp.equals(back) && CacheSetup.inside(mp, back)) {
      throw new UsageException("mount point " + mp + " is inside backing directory " + back
          + "; pick a mount point outside it");
    }
    if (!mp.equals(back) && CacheSetup.inside(back, mp)) {
      throw new UsageException("backing directory " + back + " is inside mount point " + mp
          + "; the mount would hide it: pick a mount point outside it");
    }
    Path cacheFile = CacheSetup.resolveCacheFile(cache);
    Path cacheReal = Files.exists(cacheFile) ? cacheFile.toRealPath()
        : cacheFile.getParent().toRealPath().resolve(cacheFile.getFileName());
    if (CacheSetup.inside(cacheReal, back) || CacheSetup.inside(cacheReal, mp)) {
      throw new UsageException("cache " + cacheReal + " is inside "
          + (CacheSetup.inside(cacheReal, back) ? "backing directory " + back
          : "mount point " + mp) + "; keep the cache outside both");
    }
    CacheConfig config;
    FlushStrategy strategy;
    try {
      config = engine.config();
      strategy = engine.strategy();
    } catch (IllegalArgumentException e) {
      throw new UsageException(e.getMessage());
    }
    long size = cacheSize != null ? Main.parseSize(cacheSize)
        : Files.exists(cacheReal) ? 0 : CacheSetup.defaultSize(cacheReal);
    long min = CacheLayout.Geometry.minFileSize(config.blockSize());
    if (!Files.exists(cacheReal) && size < min) {
      throw new UsageException("cache size " + size + " bytes is too small for one "
          + config.blockSize() + "-byte block plus headers (" + min + " bytes); give a larger"
          + " --cache-size");
    }
    if (Files.exists(cacheReal) && !Files.isRegularFile(cacheReal)
        && !cacheReal.toString().startsWith("/dev/")) {
      throw new UsageException("cache " + cacheReal + " is not a regular file or device");
    }
    if (Files.exists(cacheReal) && (!Files.isReadable(cacheReal)
        || !Files.isWritable(cacheReal))) {
      throw new UsageException("cache file " + cacheReal + " is not readable and writable by"
          + " this user; run wcfs as its owner or fix its permissions");
    }
    boolean allowOther = passFuseOptions.contains("allow_other");
    List<String> opts = new ArrayList<>(passFuseOptions);
    checkLibfuse();
    if (metricsAddress != null && !foreground) {
      Metrics.checkFree(metricsAddress); // the daemon binds it again before touching anything
    }
    Path log = logFile != null ? logFile.toAbsolutePath()
        : foreground ? null : cacheReal.getParent().resolve("wcfs.log");
    if (log != null && (cacheReal.getParent().equals(Path.of("/dev"))
        || !Files.isWritable(cacheReal.getParent()))) {
      log = RuntimeDir.dir().resolve("wcfs-" + mp.getFileName() + ".log");
    }
    return new MountSpec(cacheReal, back, mp, config, strategy, size, opts, allowOther,
        threads, spinMicros, log, takeOver, singleMachine, leaseMs, !noXattr,
        metricsAddress, transportMode);
  }

  /**
   * A daemon killed with -9 leaves its mount behind, dead: every access fails with ENOTCONN
   * ("Transport endpoint is not connected"). Clear it (and the daemon's stale control
   * socket): the cache recovers everything that was committed. A mount whose daemon still
   * answers is left alone.
   */
  private static void clearDeadMount(Path mp) throws IOException {
    for (int i = 0; i < 4 && Mounts.isWcfs(mp) && !ControlClient.answers(mp); i++) {
      Mounts.fusermountUnmount(mp, true);
      Files.deleteIfExists(RuntimeDir.socketFor(mp));
      System.err.println("wcfs: cleared the dead mount at " + mp + " left by a daemon that"
          + " was killed; the cache recovers everything it committed");
    }
  }

  private static void checkLibfuse() {
    LibFuse.require();
  }

  /** Starts `wcfs mount --foreground` detached, returns once it is mounted (or failed). */
  private int spawnDaemon(MountSpec spec) throws IOException, InterruptedException {
    String java = ProcessHandle.current().info().command().orElse("java");
    List<String> cmd = new ArrayList<>(List.of("setsid", java));
    // The engine's index is ~40 bytes per cache block; the rest of the heap is FUSE
    // request garbage. A bounded heap keeps the daemon's footprint predictable.
    String jvmOpts = System.getenv().getOrDefault("WCFS_DAEMON_JAVA_OPTS",
        "-Xms64m -Xmx384m -XX:+UseParallelGC");
    for (String o : jvmOpts.trim().split("\\s+")) {
      if (!o.isEmpty()) {
        cmd.add(o);
      }
    }
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(Main.class.getName());
    cmd.add("mount");
    cmd.add("--foreground");
    cmd.add("--ready-fd-stdout");
    cmd.add("--log-file");
    cmd.add(spec.logFile().toString());
    if (cacheSize != null) {
      cmd.add("--cache-size");
      cmd.add(cacheSize);
    }
    cmd.addAll(List.of("--block-size", "" + engine.blockSize, "--high-watermark",
        "" + engine.highWatermark, "--low-watermark", "" + engine.lowWatermark,
        "--writeback-jobs", "" + engine.writebackJobs, "--autocommit-blocks",
        "" + engine.autocommitBlocks, "--autocommit-time", "" + engine.autocommitTime,
        "--max-age", "" + engine.maxAge, "--flush-strategy", engine.flushStrategy));
    if (engine.cleaner) {
      cmd.add("--cleaner");
    }
    cmd.addAll(List.of("--threads", "" + threads, "--spin-us", "" + spinMicros));
    cmd.addAll(List.of("--fuse-transport", fuseTransport));
    cmd.addAll(List.of("--lease", "" + leaseMs));
    if (takeOver) {
      cmd.add("--take-over");
    }
    if (singleMachine) {
      cmd.add("--single-machine");
    }
    if (noXattr) {
      cmd.add("--no-xattr");
    }
    if (metrics != null) {
      cmd.add("--metrics");
      cmd.add(metrics);
    }
    for (String o : passFuseOptions) { // wcfs's own -o options went into the flags above
      cmd.add("-o");
      cmd.add(o);
    }
    cmd.add(cache.toAbsolutePath().toString());
    cmd.add(spec.backing().toString());
    cmd.add(spec.mountpoint().toString());
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    pb.redirectError(ProcessBuilder.Redirect.appendTo(spec.logFile().toFile()));
    Process p = pb.start();
    try (BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(),
        StandardCharsets.UTF_8))) {
      for (String line; (line = out.readLine()) != null; ) {
        if (line.equals("READY")) {
          System.out.println("wcfs: mounted " + spec.mountpoint() + " (backing "
              + spec.backing() + ", cache " + spec.cacheFile() + ", log " + spec.logFile()
              + ")");
          return 0;
        }
        if (line.startsWith("SAY ")) { // the daemon tells the person mounting (take-over)
          System.err.println("wcfs: " + line.substring(4));
          continue;
        }
        if (line.startsWith("PROGRESS ")) {
          System.err.println("wcfs: " + line.substring(9));
          continue;
        }
        if (line.startsWith("ERROR ")) {
          System.err.println("wcfs: " + line.substring(6) + "; log: " + spec.logFile());
          p.waitFor(10, TimeUnit.SECONDS);
          return p.isAlive() || p.exitValue() == 0 ? Main.EXIT_FAILURE : p.exitValue();
        }
      }
    }
    p.waitFor(10, TimeUnit.SECONDS);
    System.err.println("wcfs: the daemon exited before the mount was ready"
        + (p.isAlive() ? "" : " (exit code " + p.exitValue() + ")") + "; the end of its log "
        + spec.logFile() + ":");
    for (String line : Main.tail(spec.logFile(), 10)) {
      System.err.println("  " + line);
    }
    return Main.EXIT_FAILURE;
  }
}
