package io.wcfs.fs;

import io.wcfs.core.CacheErrorException;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.FileLocks;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeBuffer;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The claim of a backing directory by one cache at a time (DESIGN.md, "Backing directory on a
 * shared or distributed filesystem"): the file {@code BACKING/.wcfs/claim}, held with an
 * open-file-description write lock ({@code F_OFD_SETLK}) for as long as the mount lives, and
 * holding a record of the holder (host, cache, pid, mount point, since) with a generation and
 * a lease.
 *
 * <p>A lock is not a fence: a holder cut off from the servers loses its lock there but keeps
 * running. So the holder renews its claim every quarter of the lease (re-asserting the lock,
 * checking that the record still carries its generation, writing the time), and {@link
 * #checkMayWrite}, asked before every writeback batch and every change of the backing
 * directory, says no once three quarters of the lease passed without a renewal, or for good
 * once another cache's generation is in the record. {@code --take-over} bumps the generation
 * under the lock and then waits out the old holder's whole lease (plus a margin) before it
 * writes anything: by then the old holder has stopped, whatever its clock says, because only
 * durations on each machine's own monotonic clock are compared.
 *
 * <p>Lives in fs, not cache-core: it is mount policy (who may mount what, the messages and
 * options of the command line, host and process identity, the filesystem's mount table). The
 * engine only needs the yes/no it asks before each batch, through {@code BackingStore}.
 */
final class BackingClaim implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(BackingClaim.class);
  static final String DIR = ".wcfs";
  static final String FILE = "claim";
  static final long DEFAULT_LEASE_MS = 30_000;
  /** A take-over waits the old holder's lease plus this, for a batch it had begun. */
  static final long TAKE_OVER_MARGIN_MS = 2_000;
  /** The record is written whole, padded to this, with one pwrite (never a shorter file). */
  private static final int RECORD_SIZE = 4096;
  /** The walk for claims below a new backing directory stops after this many entries. */
  private static final int NESTED_WALK_LIMIT = 200_000;
  private static final long NESTED_WALK_SECONDS = 20;

  /**
   * Errors after which the claim's descriptor is of no more use (a GlusterFS client that lost
   * its connection marks its descriptors bad): EIO, EBADF, EBADFD, ENOTCONN, ESTALE. After
   * others (a slow server) it is kept, and with it the lock.
   */
  private static final java.util.Set<Integer> DEAD_DESCRIPTOR = java.util.Set.of(5, 9, 77,
      107, 116);
  private static final String HELD = "held";
  private static final String RELEASED = "released";
  private static final String TAKING_OVER = "taking-over";

  /** What a claim file says: who holds, or last held, the directory. */
  record Record(long generation, String state, String host, String boot, String cache,
      long pid, String mountpoint, String backing, String since, String renewed,
      long leaseMs) {

    String text() {
      return "wcfs-claim 1\n"
          + "generation " + generation + "\n"
          + "state " + state + "\n"
          + "host " + host + "\n"
          + "boot " + boot + "\n"
          + "cache " + cache + "\n"
          + "pid " + pid + "\n"
          + "mountpoint " + mountpoint + "\n"
          + "backing " + backing + "\n"
          + "since " + since + "\n"
          + "renewed " + renewed + "\n"
          + "lease_ms " + leaseMs + "\n"
          + "end\n";
    }

    /** The record in {@code text}, or null unless it is complete (a torn or empty read). */
    static Record parse(String text) {
      Map<String, String> f = new LinkedHashMap<>();
      boolean started = false;
      for (String line : text.split("\n")) {
        if (!started) {
          if (!line.equals("wcfs-claim 1")) {
            return null;
          }
          started = true;
          continue;
        }
        if (line.equals("end")) {
          try {
            return new Record(Long.parseLong(f.get("generation")), f.get("state"),
                f.get("host"), f.getOrDefault("boot", ""), f.get("cache"),
                Long.parseLong(f.get("pid")), f.getOrDefault("mountpoint", ""),
                f.getOrDefault("backing", ""), f.get("since"), f.getOrDefault("renewed", ""),
                Long.parseLong(f.get("lease_ms")));
          } catch (RuntimeException e) {
            return null;
          }
        }
        int sp = line.indexOf(' ');
        if (sp > 0) {
          f.put(line.substring(0, sp), line.substring(sp + 1));
        }
      }
      return null;
    }

    /** "the wcfs mount at /mnt/a on host h (cache /c/wcfs.cache, pid 12, since ...)". */
    String who() {
      return (mountpoint.isEmpty() ? "`wcfs writeback`" : "the wcfs mount at " + mountpoint)
          + " on host " + host + " (cache " + cache + ", pid " + pid + ", since " + since + ")";
    }

    boolean sameCache(Record o) {
      return host.equals(o.host) && cache.equals(o.cache);
    }

    Record with(long gen, String st, String renewedAt) {
      return new Record(gen, st, host, boot, cache, pid, mountpoint, backing, since, renewedAt,
          leaseMs);
    }
  }

  /** What the command line asked for. */
  static final class Options {
    boolean takeOver;
    boolean singleMachine;
    long leaseMs = DEFAULT_LEASE_MS;
    /** Tells the person at the command line (take-over): the daemon's stdout or stderr. */
    Consumer<String> say = s -> { };
    /** Whether the cache holds data not yet written back (asked only when it matters). */
    DataCheck cacheHoldsData = () -> false;
  }

  /** See {@link Options#cacheHoldsData}. */
  @FunctionalInterface
  interface DataCheck {
    boolean holdsData() throws IOException;
  }

  private final Path backing;
  /** For messages: where the claim file is. */
  private final Path claimFile;
  /**
   * O_PATH descriptor of the backing directory, taken before the mount: the claim file is
   * reached relative to it, never by its path, which a mount in place (MOUNTPOINT = BACKING)
   * would lead through wcfs's own mount, where .wcfs is hidden.
   */
  private final int dirFd;
  private final Record me;
  private final long generation;
  private final long leaseNanos;
  private final long validNanos;
  /** The lock's descriptor; -1 after an error until the next renewal reopens it. */
  private int fd;
  /** When the last successful renewal began (System.nanoTime). */
  private volatile long renewedAt;
  private volatile String lastRenewError;
  /** Why this cache lost its claim for good; null while it holds it. */
  private volatile String lost;
  private volatile boolean closed;
  /** Test hook: see {@link #partitionForTest}. */
  private volatile boolean partitioned;
  private final Thread renewer;

  private BackingClaim(Path backing, int dirFd, int fd, Record me, long renewedAt) {
    this.backing = backing;
    this.dirFd = dirFd;
    this.claimFile = backing.resolve(DIR).resolve(FILE);
    this.fd = fd;
    this.me = me;
    this.generation = me.generation();
    this.leaseNanos = TimeUnit.MILLISECONDS.toNanos(me.leaseMs());
    this.validNanos = leaseNanos / 4 * 3;
    this.renewedAt = renewedAt;
    this.renewer = new Thread(this::renewLoop, "wcfs-claim");
    this.renewer.setDaemon(true);
  }

  // ---- taking the claim -----------------------------------------------------------------------

  /**
   * Claims {@code backing} for {@code cacheFile} (mounted at {@code mountpoint}, or null for
   * {@code wcfs writeback}), or refuses with a {@link UsageException} of one sentence naming
   * the holder. Refuses a filesystem whose locks do not span machines unless {@code
   * singleMachine}, and a directory inside or above another claimed one.
   */
  static BackingClaim acquire(Path backing, Path cacheFile, Path mountpoint, Options o)
      throws IOException {
    BackingFilesystem fs = BackingFilesystem.of(backing);
    if (fs.locking() == BackingFilesystem.Locking.NONE) {
      if (!o.singleMachine) {
        throw new UsageException(fs.noLocksMessage(backing));
      }
      LOG.warn("{} is on {}, whose locks do not reach other machines; going on because of"
          + " --single-machine: no other machine may write there", backing, fs.type());
    }
    checkNotNested(backing);
    Path file = backing.resolve(DIR).resolve(FILE);
    int dirFd = LibC.open(backing.toString(), LibC.O_PATH | LibC.O_DIRECTORY | LibC.O_CLOEXEC,
        0);
    int fd;
    try {
      fd = openLocked(backing, dirFd, o.takeOver);
    } catch (IOException | RuntimeException | Error e) {
      LibC.close(dirFd);
      throw e;
    }
    try {
      Record old = readRecord(fd, false);
      String now = now();
      long gen = old == null ? 1 : old.generation() + 1;
      Record me = new Record(gen, HELD, hostName(), bootId(), cacheFile.toString(),
          ProcessHandle.current().pid(), mountpoint == null ? "" : mountpoint.toString(),
          backing.toString(), now, now, o.leaseMs);
      long start = System.nanoTime();
      if (old != null && !old.sameCache(me) && o.cacheHoldsData.holdsData()) {
        // This cache still holds data, so its own last claim here ended without a release;
        // any other cache that claimed the directory since needed --take-over, which gave
        // that data up: written back now, it would overwrite newer files.
        throw new UsageException("cache " + cacheFile + " holds data for " + backing + " from"
            + " before " + old.who() + " claimed it (generation " + old.generation() + ", "
            + old.state() + "), after this cache had stopped without releasing it: that data"
            + " was given up by a take-over and would overwrite newer files, so it is not"
            + " written back; discard it with `wcfs format --force " + cacheFile + "`, or use"
            + " another cache");
      }
      if (old == null || old.state().equals(RELEASED)) {
        writeRecord(fd, me);
      } else if (old.sameCache(me)) {
        // This cache's own daemon stopped without unmounting (kill -9, a crash): its data is
        // in this very cache, which recovery writes back.
        LOG.info("taking back the claim on {} that this cache's previous daemon (pid {}) left",
            backing, old.pid());
        writeRecord(fd, me);
      } else if (!o.takeOver) {
        throw new UsageException(unreleasedMessage(backing, old,
            fs.locking() == BackingFilesystem.Locking.NONE));
      } else {
        long waitMs = old.leaseMs() + TAKE_OVER_MARGIN_MS;
        String msg = "taking over " + backing + " from " + old.who() + ": whatever that cache"
            + " had not written back is lost to this directory (it stays in " + old.cache()
            + " on " + old.host() + ", which can no longer write here: its claim's generation "
            + old.generation() + " is stale now); waiting " + (waitMs + 999) / 1000 + " s for"
            + " its lease to run out";
        LOG.warn(msg);
        o.say.accept(msg);
        writeRecord(fd, me.with(gen, TAKING_OVER, now));
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMs);
        while (System.nanoTime() < end) {
          sleep(Math.min(1000, TimeUnit.NANOSECONDS.toMillis(end - System.nanoTime()) + 1));
          if (!FileLocks.tryOfdLockExclusive(fd)) {
            throw new IOException("lost the lock on " + file + " while taking " + backing
                + " over: " + whoOf(readRecord(fd, true)) + " holds it now");
          }
        }
        start = System.nanoTime();
        writeRecord(fd, me.with(gen, HELD, now()));
      }
      BackingClaim c = new BackingClaim(backing, dirFd, fd, me, start);
      c.renewer.start();
      LOG.info("claimed {} (generation {}, lease {} ms, {} {})", backing, gen, o.leaseMs,
          fs.type(), fs.locking() == BackingFilesystem.Locking.SHARED
              ? "locks span its clients" : "local filesystem");
      return c;
    } catch (IOException | RuntimeException | Error e) {
      LibC.close(fd);
      LibC.close(dirFd);
      throw e;
    }
  }

  /** Opens (creating it and .wcfs if need be) the claim file below {@code dirFd}. */
  private static int openClaimFile(int dirFd) throws NativeIOException {
    int rc = LibC.mkdirat(dirFd, DIR, 0755);
    if (rc < 0 && rc != -17) { // EEXIST
      LibC.check(rc, "mkdir " + DIR);
    }
    return LibC.openat(dirFd, DIR + "/" + FILE, LibC.O_RDWR | LibC.O_CREAT, 0644);
  }

  /**
   * Opens the claim file and takes its lock, or refuses naming the holder. A lock taken on a
   * file that no longer has its name (removed behind wcfs's back) is worth nothing, so the
   * name is checked after the lock, and on a mismatch all is done again.
   */
  private static int openLocked(Path backing, int dirFd, boolean takeOver) throws IOException {
    Path file = backing.resolve(DIR).resolve(FILE);
    for (int attempt = 0; ; attempt++) {
      int fd;
      try {
        fd = openClaimFile(dirFd);
      } catch (NativeIOException e) {
        if (e.errno() == 2 && attempt < 10) { // ENOENT: .wcfs removed by a releasing holder
          continue;
        }
        throw e;
      }
      try {
        if (!FileLocks.tryOfdLockExclusive(fd)) {
          throw new UsageException(heldMessage(backing, readRecord(fd, true), takeOver));
        }
        if (namesFile(dirFd, fd)) {
          return fd;
        }
        if (attempt >= 10) {
          throw new IOException(file + " keeps being removed and made again; is another wcfs"
              + " mounting and unmounting " + backing + " in a loop?");
        }
      } catch (IOException | RuntimeException | Error e) {
        LibC.close(fd);
        throw e;
      }
      LibC.close(fd);
    }
  }

  private static String heldMessage(Path backing, Record r, boolean takeOver) {
    String holder = r == null ? "another wcfs that is claiming it right now"
        : r.who();
    String base = "backing directory " + backing + " is claimed by " + holder;
    if (takeOver) {
      return base + ", whose lock is still held (that wcfs is alive and connected), so"
          + " --take-over does not apply: unmount it there, or, if that machine is dead, try"
          + " again once the filesystem dropped its lock (GlusterFS: network.ping-timeout, 42 s"
          + " by default)";
    }
    return base + "; unmount it there first"
        + (r == null || r.mountpoint().isEmpty() ? "" : " (wcfs umount " + r.mountpoint() + ")")
        + ", which writes everything back and hands the directory over";
  }

  private static String unreleasedMessage(Path backing, Record old, boolean noLocks) {
    return "backing directory " + backing + " was claimed by " + old.who() + ", which "
        + (noLocks ? "has not released it (on a filesystem without locks across machines wcfs"
            + " cannot tell whether it still runs)" : "stopped without releasing it")
        + ", so that cache may still hold data not written back: mount that"
        + " cache there again (or run `wcfs writeback " + old.cache() + " " + old.backing()
        + "` there) to write it back, or, if that machine or its cache is gone for good, mount"
        + " here with --take-over, which gives that data up";
  }

  private static String whoOf(Record r) {
    return r == null ? "another wcfs" : r.who();
  }

  // ---- nested backing directories -------------------------------------------------------------

  /**
   * Refuses {@code backing} when a directory above it, or one below it, is claimed by a live
   * wcfs or was left claimed by one that stopped: the two caches would write back into one
   * tree.
   */
  static void checkNotNested(Path backing) throws IOException {
    for (Path p = backing.getParent(); p != null; p = p.getParent()) {
      String holder = claimedBy(p);
      if (holder != null) {
        throw new UsageException("backing directory " + backing + " is inside " + p + ", which "
            + holder + "; two caches over one tree would write back over each other: mount "
            + p + " itself, or pick a directory outside it");
      }
    }
    String[] found = {null};
    boolean[] cut = {false};
    long[] seen = {0};
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(NESTED_WALK_SECONDS);
    Files.walkFileTree(backing, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes attrs)
          throws IOException {
        if (++seen[0] > NESTED_WALK_LIMIT || System.nanoTime() > deadline) {
          cut[0] = true;
          return FileVisitResult.TERMINATE;
        }
        Path name = d.getFileName();
        if (name == null || !name.toString().equals(DIR) || d.getParent() == null) {
          return FileVisitResult.CONTINUE;
        }
        if (!d.getParent().equals(backing)) {
          String holder = claimedBy(d.getParent());
          if (holder != null) {
            found[0] = "backing directory " + backing + " holds " + d.getParent() + ", which "
                + holder + "; two caches over one tree would write back over each other: mount"
                + " " + backing + " only after that one is unmounted, or pick another directory";
            return FileVisitResult.TERMINATE;
          }
        }
        return FileVisitResult.SKIP_SUBTREE;
      }

      @Override
      public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) {
        return ++seen[0] > NESTED_WALK_LIMIT ? FileVisitResult.TERMINATE
            : FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult visitFileFailed(Path f, IOException e) {
        return FileVisitResult.CONTINUE; // unreadable: nothing wcfs could claim there either
      }
    });
    if (found[0] != null) {
      throw new UsageException(found[0]);
    }
    if (cut[0] || seen[0] > NESTED_WALK_LIMIT) {
      LOG.warn("{} is large: looked for claimed directories below it in the first {} entries"
          + " only", backing, seen[0]);
    }
  }

  /**
   * "is claimed by X" when {@code dir}'s claim file is locked, "was claimed by X and never
   * released" when it is not but its record says held; null otherwise.
   */
  static String claimedBy(Path dir) {
    Path file = dir.resolve(DIR).resolve(FILE);
    if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) {
      return null;
    }
    int fd;
    try {
      fd = LibC.open(file.toString(), LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
    } catch (NativeIOException e) {
      return null;
    }
    try {
      Record r = readRecord(fd, true);
      boolean locked;
      try {
        locked = FileLocks.ofdLockedByOther(fd);
      } catch (NativeIOException e) {
        locked = false;
      }
      if (locked) {
        return "is claimed by " + whoOf(r);
      }
      if (r != null && !r.state().equals(RELEASED)) {
        return "was claimed by " + r.who() + " and never released";
      }
      return null;
    } catch (IOException e) {
      return null;
    } finally {
      try {
        LibC.close(fd);
      } catch (NativeIOException e) {
        // read-only descriptor: nothing to lose
      }
    }
  }

  // ---- holding it -----------------------------------------------------------------------------

  /**
   * The write guard: throws, saying why, unless this cache may change the backing directory
   * now. Cheap (no I/O): asked before every writeback batch and every backing change.
   */
  void checkMayWrite() throws IOException {
    String l = lost;
    if (l != null) {
      throw new IOException(l);
    }
    long age = System.nanoTime() - renewedAt;
    if (age > validNanos) {
      throw new IOException("the claim on " + backing + " was last renewed "
          + TimeUnit.NANOSECONDS.toSeconds(age) + " s ago (" + lastRenewError + "): writeback"
          + " waits until it is renewed, so that a machine that may have taken the directory"
          + " over is never overwritten");
    }
  }

  /** Why this cache lost its claim for good, or null. */
  String lostReason() {
    return lost;
  }

  long generation() {
    return generation;
  }

  /** One line for status. */
  String status() {
    if (lost != null) {
      return "LOST: " + lost;
    }
    long age = System.nanoTime() - renewedAt;
    return String.format("%s, generation %d, renewed %.1f s ago, lease %d ms%s", claimFile,
        generation, age / 1e9, me.leaseMs(),
        lastRenewError == null ? "" : ", renewal failing: " + lastRenewError);
  }

  private void renewLoop() {
    long period = Math.max(50, TimeUnit.NANOSECONDS.toMillis(leaseNanos) / 4);
    while (!closed) {
      try {
        Thread.sleep(period);
      } catch (InterruptedException e) {
        return;
      }
      renew();
    }
  }

  /** Re-asserts the lock, checks the generation, writes the time; package-private for tests. */
  synchronized void renew() {
    if (lost != null || closed) {
      return;
    }
    long start = System.nanoTime();
    try {
      if (partitioned) {
        throw new IOException("cut off from the servers (test)");
      }
      if (fd >= 0 && !namesFile(dirFd, fd)) {
        LOG.warn("{} was removed or replaced behind wcfs's back; claiming it again", claimFile);
        closeFd();
      }
      if (fd < 0) {
        fd = openClaimFile(dirFd);
      }
      if (!FileLocks.tryOfdLockExclusive(fd)) {
        Record r = readRecord(fd, true);
        if (r != null && (r.generation() != generation || !r.sameCache(me))) {
          lose("it was taken over by " + r.who());
          return;
        }
        throw new IOException("its lock is held by " + whoOf(r));
      }
      Record r = readRecord(fd, false);
      if (r != null && (r.generation() != generation || !r.sameCache(me))) {
        lose("it was taken over by " + r.who());
        return;
      }
      writeRecord(fd, me.with(generation, HELD, now()));
      renewedAt = start;
      if (lastRenewError != null) {
        LOG.info("the claim on {} is renewed again", backing);
        lastRenewError = null;
      }
    } catch (IOException | RuntimeException e) {
      if (lastRenewError == null) {
        LOG.warn("cannot renew the claim on {}: {}; writeback stops {} s after the last renewal"
            + " until it can", backing, e.toString(), TimeUnit.NANOSECONDS.toSeconds(validNanos));
      }
      lastRenewError = e.getMessage();
      if (e instanceof NativeIOException n && DEAD_DESCRIPTOR.contains(n.errno())) {
        closeFd(); // reopened, and locked again, by the next renewal
      }
    }
  }

  /** Whether .wcfs/claim below {@code dirFd} still names the file open at {@code fd}. */
  private static boolean namesFile(int dirFd, int fd) {
    try {
      return LibC.fstatat(dirFd, DIR + "/" + FILE, LibC.AT_SYMLINK_NOFOLLOW).ino()
          == LibC.fstat(fd).ino();
    } catch (NativeIOException e) {
      return false;
    }
  }

  private void lose(String why) {
    lost = "this cache lost its claim on " + backing + ": " + why + "; it no longer writes there,"
        + " and what it had not written back stays in its cache";
    LOG.error(lost);
  }

  private void closeFd() {
    if (fd >= 0) {
      try {
        LibC.close(fd); // drops the lock
      } catch (NativeIOException e) {
        LOG.debug("closing {}: {}", claimFile, e.toString());
      }
      fd = -1;
    }
  }

  /**
   * Gives the claim up. {@code clean}: everything was written back, so the record says
   * released and any other cache may claim the directory at once; otherwise the record keeps
   * saying held and another cache needs --take-over (this one takes it back without). The
   * file stays either way: its last holder and generation tell a cache that comes back with
   * data from before a take-over that this data was given up (see {@link #acquire}).
   */
  synchronized void release(boolean clean) {
    if (closed) {
      return; // released already: its descriptors are closed, and may be someone else's now
    }
    closed = true;
    renewer.interrupt();
    try {
      if (clean && lost == null && fd >= 0 && namesFile(dirFd, fd)) {
        Record r = readRecord(fd, false);
        if (r != null && r.generation() == generation) {
          writeRecord(fd, me.with(generation, RELEASED, now()));
          LOG.info("released the claim on {}", backing);
        }
      }
    } catch (IOException e) {
      LOG.warn("could not mark the claim on {} released ({}); the next cache to mount it needs"
          + " --take-over", backing, e.toString());
    } finally {
      closeFd();
      try {
        LibC.close(dirFd);
      } catch (NativeIOException e) {
        LOG.debug("closing {}: {}", backing, e.toString());
      }
    }
  }

  @Override
  public void close() {
    release(false);
  }

  /**
   * Test hook: cuts this holder off from the servers (on), as a network partition would: its
   * lock is dropped as a server drops a lost client's, and renewals fail until healed (off).
   */
  synchronized void partitionForTest(boolean on) {
    partitioned = on;
    if (on) {
      closeFd();
    }
  }

  // ---- draining while the claim holds -----------------------------------------------------------

  /**
   * {@link WriteCache#flush} that gives up as soon as {@code claim} is lost for good (writeback
   * would retry forever otherwise), and after {@code timeoutMs}.
   */
  static void drain(WriteCache cache, BackingClaim claim, long timeoutMs) throws IOException {
    long start = System.nanoTime();
    while (true) {
      long left = timeoutMs - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      try {
        cache.flush(Math.max(1, Math.min(2000, left)));
        return;
      } catch (CacheErrorException e) {
        throw e;
      } catch (IOException e) {
        if (claim != null && claim.lostReason() != null) {
          throw new IOException(claim.lostReason(), e);
        }
        if (left <= 2000) {
          throw e;
        }
      }
    }
  }

  // ---- the record on disk ---------------------------------------------------------------------

  /** The record in the file, or null if it is empty; with {@code retry}, a torn read is read again. */
  static Record readRecord(int fd, boolean retry) throws IOException {
    for (int attempt = 0; ; attempt++) {
      String text;
      try (NativeBuffer b = new NativeBuffer(RECORD_SIZE)) {
        long n = LibC.pread(fd, b.address(), RECORD_SIZE, 0);
        byte[] bytes = new byte[(int) n];
        b.get(0, bytes, 0, bytes.length);
        text = new String(bytes, StandardCharsets.UTF_8);
      }
      Record r = Record.parse(text);
      if (r != null || text.isBlank() || !retry || attempt >= 10) {
        return r;
      }
      sleep(50); // being written by its holder this very moment
    }
  }

  private static void writeRecord(int fd, Record r) throws IOException {
    byte[] text = r.text().getBytes(StandardCharsets.UTF_8);
    if (text.length > RECORD_SIZE) {
      throw new IOException("claim record too long (" + text.length + " bytes): shorten the"
          + " paths of the cache or mount point");
    }
    try (NativeBuffer b = new NativeBuffer(RECORD_SIZE)) {
      byte[] padded = new byte[RECORD_SIZE];
      java.util.Arrays.fill(padded, (byte) '\n');
      System.arraycopy(text, 0, padded, 0, text.length);
      b.put(0, padded, 0, RECORD_SIZE);
      LibC.pwrite(fd, b.address(), RECORD_SIZE, 0);
    }
    LibC.fsync(fd);
  }

  private static String now() {
    return Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
  }

  static String hostName() {
    try {
      return Files.readString(Path.of("/proc/sys/kernel/hostname")).trim();
    } catch (IOException e) {
      return "unknown-host";
    }
  }

  private static String bootId() {
    try {
      return Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim();
    } catch (IOException e) {
      return "";
    }
  }

  private static void sleep(long ms) throws IOException {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted");
    }
  }
}
