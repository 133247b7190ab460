package io.wcfs.fs;

import static io.wcfs.fs.FuseProtocol.*;

import io.wcfs.nativ.LibC;
import java.io.IOException;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.Struct;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Mounts a jnr-fuse filesystem and serves its requests from a fixed pool of Java threads:
 * libfuse2 mounts and decodes (fuse_setup, fuse_session_process_buf), we read /dev/fuse.
 *
 * <p>Why not fuse_main: its worker threads are native threads that libfuse starts and stops as
 * load changes, so every upcall into Java found a thread the JVM did not know, and jffi attached
 * it (a new java.lang.Thread) and detached it again, per request. Threads the JVM started are
 * attached for life; the upcall becomes an ordinary call.
 *
 * <p>Why read /dev/fuse ourselves: what remained of a FUSE round trip on the benchmark VM was
 * mostly sleeping and waking threads. One leader thread receives and processes in-memory
 * requests back to back, spinning briefly for the next one before it sleeps; see {@link
 * #work}. Measured with fio (4 KiB write+fsync, 1 job): 15k IOPS with fuse_main-style
 * blocking workers, 25k with this loop.
 *
 * <p>libfuse2 ABI used here (fuse_lowlevel.h of 2.9): {@code struct fuse_buf {size_t size;
 * enum flags; void *mem; int fd; off_t pos;}} on LP64.
 */
final class FuseLoop {
  private static final Logger LOG = LoggerFactory.getLogger(FuseLoop.class);
  /** Room for a request's headers ahead of its data, as libfuse's FUSE_BUFFER_HEADER_SIZE. */
  private static final long HEADER_ROOM = 4096;
  /** The largest write we ask the kernel to send in one request (FUSE_MAX_PAGES). */
  private static final int MAX_WRITE = 1 << 20;

  private static final LibFuse.Api FUSE = LibFuse.api();
  private static final Runtime RT = Runtime.getRuntime(FUSE);

  /** A request holding the leadership longer than this gives it up to another worker. */
  private static final long STALL_NANOS = 10_000_000;
  /** The leader's current spin (see {@link #receive}); races between workers are harmless. */
  private static volatile long spinBudget;
  /** One mount per process, so one leadership. */
  private static final Leadership LEAD = new Leadership();
  /** Whether INIT was answered with FUSE_OVER_IO_URING (requests then come over rings). */
  private static volatile boolean uringAgreed;
  /** What carries the requests, for the log and status. */
  private static volatile String transportName = "/dev/fuse";
  /** Whether the kernel agreed that we clear set-ID bits and capabilities ourselves. */
  private static volatile boolean killPrivV2;

  private FuseLoop() {}

  /**
   * Mounts {@code ops} at {@code mountpoint} with libfuse options {@code args} (as on fuse_main's
   * command line, without the mountpoint), serves requests on {@code threads} threads, and
   * returns once the filesystem is unmounted and every thread has finished its request.
   */
  static void serve(Struct ops, Path mountpoint, List<String> args, int threads, int spinMicros,
      boolean wantKillPrivV2, FuseUring.Mode transport) throws IOException {
    long spinNanos = spinMicros * 1000L;
    // Before the mount: the kernel offers io_uring in INIT only if enable_uring is set then.
    boolean offerUring = FuseUring.prepareKernel(transport);
    spinBudget = spinNanos;
    // -f: fuse_setup must not daemonize; the wcfs launcher already did.
    List<String> argv = new ArrayList<>(List.of("wcfs", mountpoint.toString(), "-f"));
    argv.addAll(args);
    List<Pointer> strings = new ArrayList<>(); // kept reachable: libfuse reads them
    Pointer argvMem = Memory.allocateDirect(RT, (argv.size() + 1) * 8L, true);
    for (int i = 0; i < argv.size(); i++) {
      byte[] b = argv.get(i).getBytes(StandardCharsets.UTF_8);
      Pointer s = Memory.allocateDirect(RT, b.length + 1, true);
      s.put(0, b, 0, b.length);
      strings.add(s);
      argvMem.putPointer(i * 8L, s);
    }
    Pointer mountpointOut = Memory.allocateDirect(RT, 8, true); // libfuse's copy, for teardown
    Pointer multithreaded = Memory.allocateDirect(RT, 4, true);
    Pointer fuse;
    String said;
    try (MountFailure.StderrCapture capture = new MountFailure.StderrCapture()) {
      fuse = FUSE.fuse_setup(argv.size(), argvMem, Struct.getMemory(ops), Struct.size(ops),
          mountpointOut, multithreaded, null);
      said = capture.restore();
    }
    Reference.reachabilityFence(strings);
    if (fuse == null) {
      throw new IOException(MountFailure.explain(mountpoint, args, said));
    }
    Pointer se = FUSE.fuse_get_session(fuse);
    Pointer ch = FUSE.fuse_session_next_chan(se, null);
    int fd = FUSE.fuse_chan_fd(ch);
    LibC.setNonBlocking(fd);
    fuseFd = fd;
    long maxWrite = negotiateInit(se, ch, fd, spinNanos, wantKillPrivV2, offerUring);
    long bufSize = Math.max(FUSE.fuse_chan_bufsize(ch), maxWrite + HEADER_ROOM);
    List<Thread> uringThreads = List.of();
    if (uringAgreed) {
      // Requests now wait in the kernel until every queue has an entry: start at once.
      uringThreads = FuseUring.start(se, fd, Math.max(maxWrite, FUSE_MIN_READ_BUFFER), threads,
          spinNanos);
      if (FuseUring.working()) {
        transportName = "io_uring (" + FuseUring.describe() + ")";
        spinNanos = 0; // /dev/fuse now carries only forgets and interrupts: not worth a spin
        spinBudget = 0;
      }
    } else if (transport != FuseUring.Mode.DEV && offerUring) {
      LOG.info("the kernel did not offer FUSE over io_uring in INIT; serving over /dev/fuse");
    }
    LOG.info("FUSE transport: {}", transportName);
    long devSpin = spinNanos;
    List<Thread> workers = new ArrayList<>();
    Thread watchdog = new Thread(() -> {
      while (!Thread.currentThread().isInterrupted()) {
        LockSupport.parkNanos(STALL_NANOS);
        LEAD.releaseIfStalled(STALL_NANOS);
      }
    }, "wcfs-fuse-watchdog");
    watchdog.setDaemon(true);
    watchdog.start();
    for (int i = 0; i < threads; i++) {
      Thread t = new Thread(() -> work(se, ch, fd, bufSize, devSpin, mountpoint),
          "wcfs-fuse-" + i);
      t.setDaemon(true);
      workers.add(t);
      t.start();
    }
    boolean interrupted = false;
    for (Thread t : workers) {
      while (t.isAlive()) {
        try {
          t.join();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    }
    watchdog.interrupt();
    for (Thread t : uringThreads) { // their entries end with the connection (ENOTCONN)
      try {
        t.join(5000);
      } catch (InterruptedException e) {
        interrupted = true;
      }
      if (t.isAlive()) {
        LOG.warn("{} did not end within 5 s of the unmount", t.getName());
      }
    }
    FUSE.fuse_teardown(fuse, mountpointOut.getPointer(0)); // closes /dev/fuse, frees the session
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Answers the kernel's INIT, the first request, before any worker starts: libfuse2 decodes it
   * and builds the reply, and we widen that reply to protocol 7.28 with FUSE_MAX_PAGES so the
   * kernel sends writes of up to {@link #MAX_WRITE} instead of libfuse2's 128 KiB (it predates
   * max_pages). A 1 MiB sequential write then costs 1 request instead of 8. libfuse sees no
   * difference: it writes its reply into a pipe (a channel of its own over the pipe's write
   * end), we patch it and write it to /dev/fuse. Protocol 7.19 to 7.28 added only opcodes
   * (libfuse2 answers ENOSYS, which the kernel remembers) and flags the kernel uses only when
   * the reply sets them; we set none but max_pages. Returns the negotiated max_write.
   */
  private static long negotiateInit(Pointer se, Pointer ch, int fd, long spinNanos,
      boolean wantKillPrivV2, boolean offerUring) throws IOException {
    long size = FUSE.fuse_chan_bufsize(ch);
    Pointer mem = Memory.allocateDirect(RT, size, true);
    Pointer buf = Memory.allocateDirect(RT, FUSE_BUF_SIZE, true);
    long n = receive(se, fd, mem.address(), size, spinNanos);
    if (n <= 0) {
      throw new IOException("the kernel sent no FUSE INIT (read returned " + n + ")");
    }
    buf.putLong(0, n);
    buf.putPointer(FUSE_BUF_MEM, mem);
    if (mem.getInt(4) != FUSE_INIT) {
      FUSE.fuse_session_process_buf(se, buf, ch); // not ours to widen; libfuse answers it
      return size - HEADER_ROOM;
    }
    int kernelMinor = mem.getInt(IN_HEADER + 4);
    int kernelFlags = mem.getInt(IN_HEADER + 12);
    // fuse_init_in.flags2 (protocol 7.36), present when flags has FUSE_INIT_EXT
    int kernelFlags2 = (kernelFlags & FUSE_INIT_EXT) != 0 ? mem.getInt(IN_HEADER + 16) : 0;
    int[] pipe = LibC.pipe();
    Pointer pipeCh = FUSE.fuse_kern_chan_new(pipe[1]); // closes pipe[1] when destroyed
    Pointer reply = Memory.allocateDirect(RT, OUT_HEADER + INIT_OUT, true);
    long len;
    try {
      LibC.setNonBlocking(pipe[0]);
      FUSE.fuse_session_process_buf(se, buf, pipeCh);
      len = LibC.read(pipe[0], reply.address(), OUT_HEADER + INIT_OUT);
    } finally {
      FUSE.fuse_chan_destroy(pipeCh);
      LibC.close(pipe[0]);
    }
    if (len < OUT_HEADER) {
      throw new IOException("libfuse did not answer the kernel's INIT (read returned " + len + ")");
    }
    int libfuseMinor = reply.getInt(OUT_HEADER + 4);
    long maxWrite = size - HEADER_ROOM;
    boolean widen = reply.getInt(4) == 0 && len == OUT_HEADER + COMPAT_22_INIT_OUT
        && kernelMinor >= MAX_PAGES_MINOR && (kernelFlags & FUSE_MAX_PAGES) != 0;
    if (widen) {
      len = OUT_HEADER + INIT_OUT;
      reply.putInt(0, (int) len);
      reply.putInt(OUT_HEADER + 4, MAX_PAGES_MINOR);
      reply.putInt(OUT_HEADER + 12, reply.getInt(OUT_HEADER + 12) | FUSE_MAX_PAGES);
      reply.putInt(OUT_HEADER + 20, MAX_WRITE);
      reply.putInt(OUT_HEADER + 24, 0); // time_gran: the kernel's default
      reply.putShort(OUT_HEADER + 28, (short) (MAX_WRITE / 4096)); // max_pages
      maxWrite = MAX_WRITE;
      // Kill-priv v2: with extended attributes answered, the kernel would otherwise ask
      // getxattr("security.capability") before every write (without it the superblock has no
      // SB_NOSEC, so no inode is ever marked as having nothing to kill). With it, the kernel
      // asks once per inode until its attributes are refreshed, and leaves clearing set-ID bits
      // and the capability on write, truncate and chown to us, telling us in the WRITE and
      // SETATTR requests when the caller lacks CAP_FSETID. 7.29 to 7.33 added only opcodes
      // libfuse2 answers ENOSYS to and flags the kernel uses only when the reply sets them; the
      // request layouts libfuse2 decodes are unchanged.
      if (wantKillPrivV2 && kernelMinor >= KILLPRIV_V2_MINOR
          && (kernelFlags & FUSE_HANDLE_KILLPRIV_V2) != 0) {
        reply.putInt(OUT_HEADER + 4, KILLPRIV_V2_MINOR);
        reply.putInt(OUT_HEADER + 12, reply.getInt(OUT_HEADER + 12) | FUSE_HANDLE_KILLPRIV_V2);
        killPrivV2 = true;
      }
      // FUSE over io_uring: flags2 of fuse_init_out (at 32), read by the kernel when flags
      // has FUSE_INIT_EXT; no newer minor needed. The kernel then holds every new request
      // until each of its queues has a ring entry registered (FuseUring.start).
      if (offerUring && (kernelFlags2 & FUSE_OVER_IO_URING_FLAGS2) != 0) {
        reply.putInt(OUT_HEADER + 12, reply.getInt(OUT_HEADER + 12) | FUSE_INIT_EXT);
        reply.putInt(OUT_HEADER + 32, FUSE_OVER_IO_URING_FLAGS2);
        uringAgreed = true;
      }
    }
    if (wantKillPrivV2 && !killPrivV2) {
      LOG.warn("the kernel (FUSE 7.{}) does not offer FUSE_HANDLE_KILLPRIV_V2: with extended"
          + " attributes on, it asks for security.capability before every write (answered from"
          + " memory); mount with -o noxattr to turn them off", kernelMinor);
    }
    LOG.info("FUSE protocol: kernel 7.{}, libfuse 7.{}, agreed 7.{}; writes of up to {} KiB per"
        + " request; kill-priv v2 {}; io_uring {}", kernelMinor, libfuseMinor,
        reply.getInt(OUT_HEADER + 4), maxWrite / 1024, killPrivV2 ? "on" : "off",
        uringAgreed ? "agreed" : (kernelFlags2 & FUSE_OVER_IO_URING_FLAGS2) != 0
            ? "offered, not taken" : "not offered");
    LibC.writeMessage(fd, reply.address(), len, "the FUSE INIT reply");
    return maxWrite;
  }

  private static void unmountLazily(Path mountpoint) {
    try {
      Mounts.fusermountUnmount(mountpoint, true);
    } catch (IOException e) {
      LOG.error("could not unmount {}: {}", mountpoint, e.getMessage());
    }
  }

  /**
   * One worker: takes the leadership, receives a request and processes it (the upcall runs
   * here), and receives the next one if it is still leader; see {@link Leadership}. A worker
   * that handed the leadership off for a READ of the backing disk takes a request already
   * waiting before it queues for it again.
   */
  private static void work(Pointer se, Pointer ch, int fd, long bufSize, long spinNanos,
      Path mountpoint) {
    Pointer mem = Memory.allocateDirect(RT, bufSize, false);
    Pointer buf = Memory.allocateDirect(RT, FUSE_BUF_SIZE, true);
    buf.putPointer(FUSE_BUF_MEM, mem); // libfuse only reads the struct; size is set per request
    FuseWorker worker;
    try {
      worker = new FuseWorker(se, ch, fd, mem, buf, bufSize);
    } catch (IOException e) {
      LOG.error("FUSE worker {} cannot start: {}", Thread.currentThread().getName(), e.toString());
      return;
    }
    FuseWorker.setCurrent(worker);
    long ticket = 0;
    while (true) {
      if (!LEAD.holds(ticket)) {
        if (worker.handedOffForRead) {
          // This worker gave the leadership up for a read of the backing disk. Before queueing
          // for it again, take a request that is already waiting, as a follower: with several
          // readers of uncached data most reads find one, and taking it here costs one read(2)
          // instead of two futex calls and a thread switch for the hand-off back. Not after a
          // commit's hand-off: fsyncs taken by followers there split the next group commit
          // (4 fio fsync jobs with the cache on a disk: fsync p99 up to 4x).
          worker.handedOffForRead = false;
          long waiting = LibC.read(fd, mem.address(), bufSize);
          if (waiting > 0) {
            buf.putLong(0, waiting);
            worker.process();
            continue;
          }
        }
        ticket = LEAD.acquire();
      }
      LEAD.busy(ticket, false);
      long n = receive(se, fd, mem.address(), bufSize, spinNanos);
      if (n <= 0) {
        LEAD.release(ticket); // the next worker sees the same end
        if (n < 0) {
          LOG.error("reading /dev/fuse failed with errno {}; unmounting {}", -n, mountpoint);
          FUSE.fuse_session_exit(se);
          unmountLazily(mountpoint);
        }
        return;
      }
      LEAD.busy(ticket, true);
      buf.putLong(0, n);
      worker.process();
    }
  }

  /** The FUSE transport in use: "/dev/fuse" or "io_uring (...)". */
  static String transport() {
    return transportName;
  }

  /** Whether kill-priv v2 was agreed: the kernel's kill flags in requests are then meaningful. */
  static boolean killPrivV2() {
    return killPrivV2;
  }


  /**
   * Called by a request about to wait (backing disk, namespace operations): if this thread
   * is the leader, another worker takes over receiving. A no-op on other threads.
   */
  static void handOff() {
    LEAD.handOff(Thread.currentThread());
  }

  /**
   * Hands off only if a request is already waiting on /dev/fuse: for a wait that is short but
   * not free (a commit's device flush, ~100 µs on an SSD). Other writers' requests then get
   * received and their fsyncs join the next commit, while a lone writer (nothing waiting: it
   * is blocked in this fsync) keeps the leader and saves two thread switches per fsync.
   */
  static void handOffIfPending() {
    handedOffIfPending();
  }

  private static boolean handedOffIfPending() {
    int fd = fuseFd;
    if (fd >= 0 && LEAD.heldBy(Thread.currentThread()) && LibC.readableNow(fd)) {
      handOff();
      return true;
    }
    return false;
  }

  /**
   * {@link #handOffIfPending} before a read of the backing disk: if it handed off, the worker
   * takes a request already waiting once the read is answered (see {@link #work}).
   */
  static void handOffForRead() {
    if (handedOffIfPending()) {
      FuseWorker w = FuseWorker.current();
      // The store runs this hook before its stats too, a commit's among them: only a READ's
      // hand-off lets the worker take a waiting request.
      if (w != null && w.processingRead()) {
        w.handedOffForRead = true;
      }
    }
  }

  /** The /dev/fuse descriptor of the one mount of this process; -1 before it is mounted. */
  private static volatile int fuseFd = -1;



  /**
   * The next request's length; 0 once the connection ended (unmounted), or -errno. Spins on
   * the non-blocking descriptor before sleeping in poll: a request that arrives meanwhile is
   * taken without a wakeup, which on a VM costs more than the request's whole processing (most
   * of a FUSE round trip here was context switching). The spin adapts between maxSpin/8 and
   * maxSpin: it doubles when it caught a request and halves when it did not, so a client that
   * pauses between requests (a database doing its own work) does not lose a CPU to our spin.
   */
  private static long receive(Pointer se, int fd, long mem, long size, long maxSpin) {
    long spin = spinBudget;
    long spinUntil = System.nanoTime() + spin;
    boolean spinning = spin > 0;
    while (FUSE.fuse_session_exited(se) == 0) {
      long n = LibC.read(fd, mem, size);
      if (n > 0) {
        if (spinning) {
          spinBudget = Math.min(maxSpin, Math.max(2 * spin, maxSpin / 8));
        }
        return n;
      }
      if (n == -LibC.EAGAIN) {
        if (spinning && System.nanoTime() < spinUntil) {
          Thread.onSpinWait();
        } else {
          if (spinning) {
            spinBudget = spin / 2 < maxSpin / 8 ? maxSpin / 8 : spin / 2;
            spinning = false;
          }
          LibC.awaitReadable(fd, 1000); // bounded: re-checks whether the session ended
        }
      } else if (n == -ENODEV) {
        return 0;
      } else if (n != -LibC.EINTR && n != -ENOENT) { // ENOENT: request interrupted, retry
        return n;
      }
    }
    return 0;
  }
}
