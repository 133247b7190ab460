package io.wcfs.fs;

import io.wcfs.core.CacheConfig;
import io.wcfs.core.CacheInspector;
import io.wcfs.core.CacheLayout;
import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.PmemCacheMemory;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.FlushStrategy;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** The {@code wcfs} command line. */
@Command(name = "wcfs", mixinStandardHelpOptions = true, version = "wcfs 0.1.0",
    description = "Write-caching overlay filesystem: dm-writecache for files.",
    subcommands = {MountCommand.class, Main.Umount.class, Main.Status.class, Main.Flush.class,
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

  static String message(Throwable e) {
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
