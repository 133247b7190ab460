package io.wcfs.fs;

import io.wcfs.core.CacheConfig;
import io.wcfs.core.CacheInspector;
import io.wcfs.core.CacheLayout;
import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.PmemCacheMemory;
import io.wcfs.core.WriteCache;
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
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** The {@code wcfs} command line. */
@Command(name = "wcfs", mixinStandardHelpOptions = true, version = "wcfs 0.1.0",
    description = "Write-caching overlay filesystem: dm-writecache for files.",
    subcommands = {Main.Mount.class, Main.Umount.class, Main.Status.class, Main.Flush.class,
        Main.Format.class, Main.Check.class, Main.Writeback.class, MountHelper.class,
        Install.class, Install.Uninstall.class})
public final class Main {
  static final int EXIT_FAILURE = 1;
  static final int EXIT_USAGE = 2;

  public static void main(String[] args) {
    configureLogging(args);
    int rc = commandLine().execute(args);
    if (!Daemon.shuttingDown) {
      System.exit(rc);
    }
  }

  /**
   * slf4j-simple reads its settings once, when the first logger is made: set them first. A
   * daemon ({@code --foreground --log-file LOG}) makes the log its standard error, appended
   * to: what libfuse and fusermount print there (why a mount failed) lands in the log between
   * our own lines, instead of being overwritten by a logger that opened the file for itself
   * from offset 0 (slf4j-simple's logFile truncates, then writes at its own offset).
   */
  private static void configureLogging(String[] args) {
    List<String> list = List.of(args);
    boolean foreground = list.contains("-f") || list.contains("--foreground");
    for (int i = 0; i + 1 < args.length; i++) {
      if (args[i].equals("--log-file")) {
        if (!foreground || !logToStderr(args[i + 1])) {
          System.setProperty("org.slf4j.simpleLogger.logFile", args[i + 1]);
        }
      }
    }
    System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    System.setProperty("org.slf4j.simpleLogger.dateTimeFormat", "yyyy-MM-dd HH:mm:ss.SSS");
    System.setProperty("org.slf4j.simpleLogger.levelInBrackets", "true");
    System.setProperty("org.slf4j.simpleLogger.log.jnr", "warn");
    if (args.length == 0 || !args[0].equals("mount")) {
      // One-shot commands print their result; only warnings belong on stderr.
      System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    }
  }

  /** Points standard error (fd 2) at the end of {@code log}; false if it cannot be opened. */
  private static boolean logToStderr(String log) {
    try {
      int fd = io.wcfs.nativ.LibC.open(log, io.wcfs.nativ.LibC.O_WRONLY
          | io.wcfs.nativ.LibC.O_CREAT | io.wcfs.nativ.LibC.O_APPEND, 0644);
      System.err.flush();
      io.wcfs.nativ.LibC.dup2(fd, 2);
      io.wcfs.nativ.LibC.close(fd);
      return true;
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  static CommandLine commandLine() {
    CommandLine cl = new CommandLine(new Main());
    cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
      cmd.getErr().println("wcfs: " + message(e));
      return e instanceof UsageException || e instanceof IllegalArgumentException
          ? EXIT_USAGE : EXIT_FAILURE;
    });
    cl.setParameterExceptionHandler((e, args) -> {
      e.getCommandLine().getErr().println("wcfs: " + e.getMessage() + "; see `wcfs "
          + e.getCommandLine().getCommandName() + " --help`");
      return EXIT_USAGE;
    });
    return cl;
  }

  private static String message(Throwable e) {
    if (e instanceof java.nio.file.NoSuchFileException) {
      return e.getMessage() + ": no such file or directory";
    }
    if (e instanceof java.nio.file.AccessDeniedException a) {
      return a.getFile() + ": permission denied"
          + (a.getReason() == null ? "" : " (" + a.getReason() + ")");
    }
    return e.getMessage() == null ? e.toString() : e.getMessage();
  }

  /** "64M", "1G", "4096": sizes with binary suffixes. */
  static long parseSize(String text) {
    String t = text.trim().toUpperCase(Locale.ROOT).replaceAll("I?B$", "");
    long mult = 1;
    char last = t.isEmpty() ? ' ' : t.charAt(t.length() - 1);
    switch (last) {
      case 'K' -> mult = 1L << 10;
      case 'M' -> mult = 1L << 20;
      case 'G' -> mult = 1L << 30;
      case 'T' -> mult = 1L << 40;
      default -> mult = 1;
    }
    try {
      return Long.parseLong(mult == 1 ? t : t.substring(0, t.length() - 1)) * mult;
    } catch (NumberFormatException e) {
      throw new UsageException("cannot read size '" + text + "'; give bytes or a number with"
          + " K, M, G or T, e.g. 256M");
    }
  }

  /** Engine tunables shared by mount, format and writeback, with dm-writecache's names. */
  static final class EngineOptions {
    @Option(names = "--block-size", paramLabel = "BYTES", defaultValue = "4096",
        description = "Cache block size, a power of two (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--high-watermark", defaultValue = "50",
        description = "Start writeback above this %% of used blocks (default ${DEFAULT-VALUE}).")
    int highWatermark;

    @Option(names = "--low-watermark", defaultValue = "45",
        description = "Stop writeback below this %% of used blocks (default ${DEFAULT-VALUE}).")
    int lowWatermark;

    @Option(names = "--writeback-jobs", defaultValue = "1024",
        description = "Blocks in flight per writeback batch (default ${DEFAULT-VALUE}).")
    int writebackJobs;

    @Option(names = "--autocommit-blocks", defaultValue = "64",
        description = "Commit after this many uncommitted blocks (default ${DEFAULT-VALUE}).")
    int autocommitBlocks;

    @Option(names = "--autocommit-time", paramLabel = "MS", defaultValue = "1000",
        description = "Commit blocks left uncommitted this long (default ${DEFAULT-VALUE} ms).")
    long autocommitTime;

    @Option(names = "--max-age", paramLabel = "MS", defaultValue = "30000",
        description = "Write back blocks older than this, whatever the watermarks (default"
            + " ${DEFAULT-VALUE} ms, the kernel's dirty expiry; 0: off, the backing directory"
            + " may then lag until the cache is half full).")
    long maxAge;

    @Option(names = "--cleaner", description = "Write everything back and keep the cache clean.")
    boolean cleaner;

    @Option(names = "--flush-strategy", defaultValue = "auto",
        description = "auto, eager, late or msync (default ${DEFAULT-VALUE}).")
    String flushStrategy;

    CacheConfig config() {
      return new CacheConfig(blockSize, highWatermark, lowWatermark, writebackJobs,
          autocommitBlocks, autocommitTime, maxAge, cleaner);
    }

    FlushStrategy strategy() {
      return FlushStrategy.parse(flushStrategy);
    }
  }

  // =============================================================================================

  @Command(name = "mount", description = {
      "Show BACKING at MOUNTPOINT, caching writes in CACHE.",
      "CACHE is a pmem device or file, or a directory to hold wcfs.cache; a new cache is",
      "created (--cache-size), a zero-filled one formatted, an existing one recovered."})
  static final class Mount implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "CACHE") Path cache;
    @Parameters(index = "1", paramLabel = "BACKING") Path backing;
    @Parameters(index = "2", paramLabel = "MOUNTPOINT") Path mountpoint;
    @Mixin EngineOptions engine;

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
            System.out.println("ERROR " + message(e));
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
      long size = cacheSize != null ? parseSize(cacheSize)
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
            return p.isAlive() || p.exitValue() == 0 ? EXIT_FAILURE : p.exitValue();
          }
        }
      }
      p.waitFor(10, TimeUnit.SECONDS);
      System.err.println("wcfs: the daemon exited before the mount was ready"
          + (p.isAlive() ? "" : " (exit code " + p.exitValue() + ")") + "; the end of its log "
          + spec.logFile() + ":");
      for (String line : tail(spec.logFile(), 10)) {
        System.err.println("  " + line);
      }
      return EXIT_FAILURE;
    }
  }

  /** The last {@code n} lines of a log, for a message; none if it cannot be read. */
  static List<String> tail(Path log, int n) {
    try {
      List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      return lines.subList(Math.max(0, lines.size() - n), lines.size());
    } catch (IOException | RuntimeException e) {
      return List.of();
    }
  }

  @Command(name = "umount", description = "Commit, write everything back, unmount; the daemon"
      + " exits.")
  static final class Umount implements Callable<Integer> {
    @Parameters(paramLabel = "MOUNTPOINT") Path mountpoint;

    @Override
    public Integer call() throws Exception {
      Path mp = mountpoint.toAbsolutePath().normalize();
      if (Files.isDirectory(mp)) {
        mp = mp.toRealPath();
      }
      long pid = daemonPid(mp);
      try {
        Flush.drain(mp, "writing back before unmount");
      } catch (ClaimLostException e) {
        // Another machine took the backing directory over: nothing will be written back from
        // here, waiting for it would hang; the data stays in the cache.
        System.err.println("wcfs: " + e.getMessage() + "; unmounting without writing back");
      }
      Mounts.fusermountUnmount(mp, false);
      ProcessHandle.of(pid).ifPresent(h -> {
        try {
          h.onExit().get(10, TimeUnit.MINUTES);
        } catch (Exception e) {
          throw new IllegalStateException("daemon " + pid + " did not exit: " + e);
        }
      });
      System.out.println("wcfs: unmounted " + mp);
      return 0;
    }

    private static long daemonPid(Path mp) throws IOException {
      long[] pid = {-1};
      ControlClient.request(mp, "status-json", line -> {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"pid\": (\\d+)")
            .matcher(line);
        if (m.find()) {
          pid[0] = Long.parseLong(m.group(1));
        }
      });
      return pid[0];
    }
  }

  @Command(name = "status", description = "Counters, latencies and backend of a mount (or, for"
      + " a CACHE that is not mounted, what `check` reports).")
  static final class Status implements Callable<Integer> {
    @Parameters(paramLabel = "MOUNTPOINT|CACHE") Path target;

    @Option(names = "--json", description = "One JSON object.") boolean json;

    @Option(names = "--watch", description = "Refresh once a second until interrupted.")
    boolean watch;

    @Override
    public Integer call() throws Exception {
      Path t = target.toAbsolutePath().normalize();
      if (!watch) {
        return once(t);
      }
      boolean terminal = System.console() != null;
      java.time.format.DateTimeFormatter hms = java.time.format.DateTimeFormatter
          .ofPattern("HH:mm:ss");
      while (true) {
        java.time.LocalTime at = java.time.LocalTime.now();
        java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
        PrintStream out = System.out;
        int rc;
        try {
          System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
          rc = once(t);
        } finally {
          System.setOut(out);
        }
        // one write per refresh: the screen never shows half a table
        out.print((terminal ? "\033[H\033[2J" : "") + "wcfs status " + t + " at "
            + at.format(hms) + " (every 1 s; Ctrl-C stops)\n"
            + buf.toString(StandardCharsets.UTF_8) + (terminal ? "" : "\n"));
        out.flush();
        if (rc != 0) {
          return rc;
        }
        // To the next second of the wall clock the header shows: one refresh per second, each
        // with its own time, even when a refresh took long or the clock was adjusted.
        long now = System.currentTimeMillis();
        Thread.sleep(Math.max(1, 1000 - now % 1000));
      }
    }

    private int once(Path t) throws IOException {
      if (Files.isDirectory(t) && Mounts.isWcfs(t.toRealPath())) {
        ControlClient.request(t.toRealPath(), json ? "status-json" : "status",
            System.out::println);
        return 0;
      }
      return Check.report(t);
    }
  }

  @Command(name = "flush", description = "Write every cached block back now and wait.")
  static final class Flush implements Callable<Integer> {
    @Parameters(paramLabel = "MOUNTPOINT") Path mountpoint;

    @Override
    public Integer call() throws Exception {
      Path mp = mountpoint.toAbsolutePath().normalize();
      String took = drain(Files.isDirectory(mp) ? mp.toRealPath() : mp, "writing back");
      System.out.println("wcfs: " + mp + " is clean: everything is in the backing directory"
          + took);
      return 0;
    }

    /** Flushes; returns what the daemon reported, e.g. " (wrote back 1024 MiB in 0.71 s)". */
    static String drain(Path mp, String what) throws IOException {
      long start = System.nanoTime();
      String[] error = {null};
      String[] lost = {null};
      String[] done = {""};
      ControlClient.request(mp, "flush", line -> {
        if (line.startsWith("progress ") && System.nanoTime() - start > 1_000_000_000L) {
          System.err.println("wcfs: " + what + ": " + line.substring(9) + " blocks left");
        } else if (line.startsWith("error ")) {
          error[0] = line.substring(6);
        } else if (line.startsWith("lost ")) {
          lost[0] = line.substring(5);
        } else if (line.startsWith("done ")) {
          String[] f = line.split(" ");
          long bytes = Long.parseLong(f[1]);
          double secs = Long.parseLong(f[2]) / 1e9;
          if (bytes > 0) {
            done[0] = String.format(" (wrote back %.1f MiB in %.3f s, %.0f MB/s)",
                bytes / 1048576.0, secs, bytes / 1e6 / secs);
          }
        }
      });
      if (lost[0] != null) {
        throw new ClaimLostException(lost[0]);
      }
      if (error[0] != null) {
        throw new IOException("writeback failed, data stays in the cache: " + error[0]);
      }
      return done[0];
    }
  }

  /** The mount lost its claim on the backing directory: its writeback will not happen. */
  static final class ClaimLostException extends IOException {
    ClaimLostException(String message) {
      super(message);
    }
  }

  @Command(name = "format", description = "Create or format a cache for BACKING.")
  static final class Format implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "CACHE") Path cache;
    @Parameters(index = "1", paramLabel = "BACKING") Path backing;

    @Option(names = "--cache-size", paramLabel = "SIZE") String cacheSize;

    @Option(names = "--block-size", defaultValue = "4096") int blockSize;

    @Option(names = "--force", description = "Format even over a foreign file or a cache that"
        + " still holds data not written back (that data is lost).")
    boolean force;

    @Override
    public Integer call() throws Exception {
      Path back = CacheSetup.realDirectory(backing, "backing directory",
          "create it or give an existing directory");
      Path file = CacheSetup.resolveCacheFile(cache);
      try {
        CacheLayout.checkBlockSize(blockSize);
      } catch (IllegalArgumentException e) {
        throw new UsageException(e.getMessage());
      }
      if (!Files.exists(file)) {
        long size = cacheSize != null ? parseSize(cacheSize) : CacheSetup.defaultSize(file);
        CacheSetup.create(file, size, blockSize, line -> System.err.println("wcfs: " + line));
      }
      try (PmemCacheMemory mem = CacheSetup.map(file, FlushStrategy.AUTO)) {
        CacheLayout.Contents c = CacheLayout.inspect(mem);
        if (c == CacheLayout.Contents.FOREIGN && !force) {
          throw new UsageException(file + " is not a wcfs cache; refusing to overwrite it (pass"
              + " --force if its contents may be destroyed)");
        }
        if (c == CacheLayout.Contents.WCFS_CACHE && !force) {
          CacheInspector.Report r = CacheInspector.inspect(mem);
          if (r.holdsData()) {
            throw new UsageException(file + " holds " + r.committedBlocks() + " blocks and "
                + r.journalRecords() + " namespace records not yet written back; run `wcfs"
                + " writeback` first, or pass --force to discard them");
          }
        }
        CacheLayout.format(mem, blockSize, new DirectoryBackingStore(back).identity());
      }
      System.out.println("wcfs: formatted " + file + " for " + back);
      return 0;
    }
  }

  @Command(name = "check", description = "Verify a cache offline and report what is in it.")
  static final class Check implements Callable<Integer> {
    @Parameters(paramLabel = "CACHE") Path cache;

    @Override
    public Integer call() throws Exception {
      return report(cache);
    }

    static int report(Path cacheArg) throws IOException {
      Path file = CacheSetup.resolveCacheFile(cacheArg);
      if (!Files.exists(file)) {
        throw new UsageException("cache " + file + " does not exist");
      }
      try (PmemCacheMemory mem = CacheSetup.map(file, FlushStrategy.MSYNC)) {
        CacheInspector.Report r = CacheInspector.inspect(mem);
        System.out.print(file + ": " + r.text());
        return r.ok() ? 0 : EXIT_FAILURE;
      }
    }
  }

  @Command(name = "writeback", description = "Write a cache's committed data back into its"
      + " backing directory without mounting.")
  static final class Writeback implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "CACHE") Path cache;
    @Parameters(index = "1", paramLabel = "BACKING") Path backing;

    @Option(names = "--take-over", description = "As for mount: take BACKING over from a wcfs"
        + " that stopped without releasing it.")
    boolean takeOver;

    @Option(names = "--single-machine", description = "As for mount: go on on a filesystem"
        + " whose locks do not span machines.")
    boolean singleMachine;

    /** Blocks of a format version 1 cache, which the open writes back; -1: not one. */
    private long version1Blocks = -1;

    @Override
    public Integer call() throws Exception {
      Path back = CacheSetup.realDirectory(backing, "backing directory",
          "give the directory the cache belongs to");
      Path file = CacheSetup.resolveCacheFile(cache);
      if (!Files.exists(file)) {
        throw new UsageException("cache " + file + " does not exist");
      }
      try (PmemCacheMemory mem = CacheSetup.map(file, FlushStrategy.AUTO)) {
        CacheLayout.Contents c = CacheLayout.inspect(mem);
        if (c == CacheLayout.Contents.FORMAT_INTERRUPTED) {
          throw new UsageException(file + " was being formatted when wcfs stopped and holds no"
              + " data; nothing to write back (the next mount formats it again)");
        }
        if (c != CacheLayout.Contents.WCFS_CACHE) {
          throw new UsageException(file + " is not a wcfs cache; nothing to write back");
        }
        if (CacheInspector.isFormatVersion1(mem)) {
          // Opening it writes these back, by version 1's rules, and formats it as the current
          // version.
          version1Blocks = CacheInspector.inspect(mem).committedBlocks();
        }
      }
      BackingClaim.Options o = new BackingClaim.Options();
      o.takeOver = takeOver;
      o.singleMachine = singleMachine;
      o.say = msg -> System.err.println("wcfs: " + msg);
      o.cacheHoldsData = () -> CacheSetup.holdsData(file);
      boolean clean = false;
      BackingClaim claim = BackingClaim.acquire(back, file.toRealPath(), null, o);
      try {
        DirectoryBackingStore store = new DirectoryBackingStore(back);
        store.setWriteGuard(claim::checkMayWrite);
        WriteCache wc = CacheSetup.open(file, store, CacheConfig.DEFAULTS, FlushStrategy.AUTO,
            () -> {});
        long blocks = wc.stats().space().dirtyBlocks();
        try {
          BackingClaim.drain(wc, claim, TimeUnit.HOURS.toMillis(24));
        } catch (IOException e) {
          wc.abandon();
          throw e;
        }
        wc.close(TimeUnit.HOURS.toMillis(24));
        clean = true;
        System.out.println("wcfs: wrote " + (version1Blocks >= 0 ? version1Blocks + blocks
            : blocks) + " blocks back to " + back + (version1Blocks >= 0 ? " (the cache was"
            + " format version 1; it is now formatted as version " + CacheLayout.VERSION + ")"
            : ""));
        return 0;
      } finally {
        claim.release(clean);
      }
    }
  }
}
