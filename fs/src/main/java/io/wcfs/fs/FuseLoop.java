package io.wcfs.fs;

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
  private static final int ENOENT = 2;
  private static final int ENODEV = 19;
  private static final int FUSE_BUF_SIZE = 40;
  private static final int FUSE_BUF_MEM = 16;
  /** Room for a request's headers ahead of its data, as libfuse's FUSE_BUFFER_HEADER_SIZE. */
  private static final long HEADER_ROOM = 4096;
  /** The largest write we ask the kernel to send in one request (FUSE_MAX_PAGES). */
  private static final int MAX_WRITE = 1 << 20;
  private static final int FUSE_INIT = 26;
  private static final int IN_HEADER = 40; // struct fuse_in_header
  private static final int OUT_HEADER = 16; // struct fuse_out_header
  private static final int COMPAT_22_INIT_OUT = 24; // what libfuse2 replies
  private static final int INIT_OUT = 64; // struct fuse_init_out of protocol 7.23 and later
  private static final int MAX_PAGES_MINOR = 28;
  private static final int FUSE_MAX_PAGES = 1 << 22;
  /** Protocol 7.33 brought FUSE_HANDLE_KILLPRIV_V2 and the kill flags of WRITE and SETATTR. */
  private static final int KILLPRIV_V2_MINOR = 33;
  private static final int FUSE_HANDLE_KILLPRIV_V2 = 1 << 28;
  private static final int FUSE_WRITE_KILL_SUIDGID = 1 << 2;
  private static final int FUSE_INIT_EXT = 1 << 30;
  /** FUSE_OVER_IO_URING is bit 41 of the 64-bit flags: bit 9 of flags2. */
  private static final int FUSE_OVER_IO_URING_FLAGS2 = 1 << (41 - 32);
  /** The kernel's smallest ring payload buffer (FUSE_MIN_READ_BUFFER). */
  private static final long FUSE_MIN_READ_BUFFER = 8192;
  private static final int FATTR_KILL_SUIDGID = 1 << 11;

  // Opcodes and layouts (fuse_kernel.h) of the requests and replies patched below.
  private static final int FUSE_LOOKUP = 1;
  private static final int FUSE_FORGET = 2;
  private static final int FUSE_WRITE = 16;
  private static final int FUSE_GETXATTR = 22;
  private static final int FUSE_BATCH_FORGET = 42;
  private static final int FUSE_GETATTR = 3;
  private static final int FUSE_SETATTR = 4;
  private static final int FUSE_LINK = 13;
  private static final int FUSE_FLUSH = 25;
  private static final int ENOSYS = 38;
  private static final int FUSE_CREATE = 35;
  private static final int FUSE_UNLINK = 10;
  private static final int FUSE_RENAME = 12;
  private static final int FUSE_RELEASE = 18;
  private static final int FUSE_RENAME2 = 45;
  /**
   * Held by RELEASE and by the namespace operations that may hide an open file (UNLINK,
   * RENAME): libfuse2's high-level layer checks whether the name is open, then renames it to
   * .fuse_hidden and marks it hidden, while RELEASE lowers the open count and removes the hidden
   * file if it was the last. A RELEASE between that check and the mark (the kernel sends it
   * asynchronously, so it can run beside the caller's next unlink) left a .fuse_hidden file for
   * good. Mostly seen over io_uring, where every entry has its own thread.
   */
  private static final Object HIDE_LOCK = new Object();
  /**
   * RELEASEs a ring thread has received and not finished. Over io_uring the kernel hands a
   * RELEASE (sent asynchronously at the last close) and the caller's next UNLINK to different
   * threads, and the UNLINK's may run first: libfuse2 then hides the still-open file, and the
   * .fuse_hidden name stays visible until the RELEASE removes it. So UNLINK and RENAME wait
   * (at most {@link #RELEASE_WAIT_NANOS}) for RELEASEs received and not finished, and for the
   * RELEASE that may follow a recent FLUSH (every close sends a FLUSH, synchronously, before
   * the last one's RELEASE): {@link #FLUSHED}, by node id, until its RELEASE arrives or
   * {@link #FLUSH_RELEASE_NANOS} passed (a close that was not the last sends none).
   */
  private static final java.util.concurrent.atomic.AtomicInteger RELEASES_IN_FLIGHT =
      new java.util.concurrent.atomic.AtomicInteger();
  private static final long RELEASE_WAIT_NANOS = 5_000_000;
  private static final long FLUSH_RELEASE_NANOS = 2_000_000;
  private static final java.util.concurrent.ConcurrentHashMap<Long, Long> FLUSHED =
      new java.util.concurrent.ConcurrentHashMap<>();
  private static final int FATTR_ATIME = 1 << 4;
  private static final int FATTR_MTIME = 1 << 5;
  private static final int FATTR_ATIME_NOW = 1 << 7;
  private static final int FATTR_MTIME_NOW = 1 << 8;
  private static final int UTIME_OMIT = (1 << 30) - 2;
  private static final int FUSE_NOTIFY_INVAL_INODE = 2;
  /** Room for any reply that carries attributes: fuse_entry_out + fuse_open_out is 144 bytes. */
  private static final int ATTR_REPLY_ROOM = 4096;
  /** The attributes' offset in fuse_attr_out and in fuse_entry_out. */
  private static final int ATTR_OUT_ATTR = 16;
  private static final int ENTRY_OUT_ATTR = 40;
  /** Offsets of mode and nlink in struct fuse_attr, and its size. */
  private static final int ATTR_MODE = 60;
  private static final int ATTR_NLINK = 64;
  private static final int ATTR_SIZE = 88;
  private static final int S_IFMT = 0170000;
  private static final int S_IFDIR = 0040000;

  private static final LibFuse.Api FUSE = LibFuse.api();
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();
  /** fuse_uring_req_header.ring_ent_in_out.payload_sz: after in_out and op_in (128 each). */
  static final int URING_PAYLOAD_SZ = 256 + 16;
  private static final Runtime RT = Runtime.getRuntime(FUSE);
  /** The worker serving the current thread, for callbacks that act after the reply. */
  private static final ThreadLocal<Worker> WORKER = new ThreadLocal<>();

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
  /** The kernel's FUSE opcodes by number (fuse_opcode in include/uapi/linux/fuse.h). */
  private static final String[] OPCODE_NAMES = {"", "lookup", "forget", "getattr", "setattr",
      "readlink", "symlink", "", "mknod", "mkdir", "unlink", "rmdir", "rename", "link", "open",
      "read", "write", "statfs", "release", "", "fsync", "setxattr", "getxattr", "listxattr",
      "removexattr", "flush", "init", "opendir", "readdir", "releasedir", "fsyncdir", "getlk",
      "setlk", "setlkw", "access", "create", "interrupt", "bmap", "destroy", "ioctl", "poll",
      "notify_reply", "batch_forget", "fallocate", "readdirplus", "rename2", "lseek",
      "copy_file_range", "setupmapping", "removemapping", "syncfs", "tmpfile", "statx"};
  /** Requests received, by opcode: what an operation costs in round trips (status). */
  private static final java.util.concurrent.atomic.LongAdder[] REQUESTS =
      new java.util.concurrent.atomic.LongAdder[OPCODE_NAMES.length];

  static {
    for (int i = 0; i < REQUESTS.length; i++) {
      REQUESTS[i] = new java.util.concurrent.atomic.LongAdder();
    }
  }

  /** Requests received so far by opcode name ("fuse_lookup" ...), and their total. */
  static java.util.Map<String, Long> requestCounts() {
    java.util.Map<String, Long> out = new java.util.LinkedHashMap<>();
    long total = 0;
    for (int i = 1; i < REQUESTS.length; i++) {
      long n = REQUESTS[i].sum();
      total += n;
      if (n > 0 && !OPCODE_NAMES[i].isEmpty()) {
        out.put("fuse_" + OPCODE_NAMES[i], n);
      }
    }
    out.put("fuse_requests", total);
    return out;
  }

  /** GETXATTR requests the kernel sent (the security.capability probes before writes among them). */
  private static final java.util.concurrent.atomic.LongAdder GETXATTRS =
      new java.util.concurrent.atomic.LongAdder();
  /** Told the node ids the kernel forgot (FORGET, BATCH_FORGET), before libfuse handles them. */
  private static volatile java.util.function.LongConsumer forgetListener = id -> { };

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
   * here), and receives the next one if it is still leader; see {@link Leadership}.
   */
  private static void work(Pointer se, Pointer ch, int fd, long bufSize, long spinNanos,
      Path mountpoint) {
    Pointer mem = Memory.allocateDirect(RT, bufSize, false);
    Pointer buf = Memory.allocateDirect(RT, FUSE_BUF_SIZE, true);
    buf.putPointer(FUSE_BUF_MEM, mem); // libfuse only reads the struct; size is set per request
    Worker worker;
    try {
      worker = new Worker(se, ch, fd, mem, buf);
    } catch (IOException e) {
      LOG.error("FUSE worker {} cannot start: {}", Thread.currentThread().getName(), e.toString());
      return;
    }
    WORKER.set(worker);
    long ticket = 0;
    while (true) {
      if (!LEAD.holds(ticket)) {
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

  static long getxattrRequests() {
    return GETXATTRS.sum();
  }

  static void onForget(java.util.function.LongConsumer listener) {
    forgetListener = listener;
  }

  /** Makes {@code w} this thread's worker (for the callbacks below). */
  static void setWorker(Worker w) {
    WORKER.set(w);
  }

  static Worker worker() {
    return WORKER.get();
  }

  /** The FUSE node id of the request being processed on this thread; -1 outside a worker. */
  static long currentNodeId() {
    Worker w = WORKER.get();
    return w == null ? -1 : w.mem.getLong(16); // fuse_in_header.nodeid
  }

  /**
   * Whether the request being processed on this thread asks us to clear set-ID bits: a WRITE
   * with FUSE_WRITE_KILL_SUIDGID or a SETATTR with FATTR_KILL_SUIDGID, which the kernel sets
   * (with kill-priv v2 only) when the caller lacks CAP_FSETID, or for every chown.
   */
  static boolean killSuidGidRequested() {
    Worker w = WORKER.get();
    return w != null && killPrivV2 && w.killSuidGid;
  }

  /**
   * Called from a callback: once the reply to the request being processed on this thread is
   * out, the kernel is told to drop its cached attributes of that request's inode (they changed
   * in a way the reply does not show). A no-op outside a FUSE worker.
   */
  static void invalidateAttributesAfterReply() {
    Worker w = WORKER.get();
    if (w != null) {
      w.invalidateAfterReply(w.mem.getLong(16)); // fuse_in_header.nodeid
    }
  }

  /**
   * One worker's request processing, with three corrections to libfuse2's high-level layer:
   *
   * <p>Hard links: the high-level layer gives every name its own kernel inode, so the kernel
   * keeps attributes per name and a change through one name (link, unlink, chmod, a write) left
   * the others stale for attr_timeout: st_nlink read 1 after link(). Replies that carry the
   * attributes of a non-directory with more than one link are therefore marked valid for no
   * time (libfuse writes them to a pipe, we patch and forward them), and after a LINK the old
   * name's cached attributes, cached while it had one link, are invalidated.
   *
   * <p>utimensat with UTIME_OMIT for one of the times: the kernel sends SETATTR with only the
   * other time, and libfuse2 calls utimens only when both are present, so the change was lost.
   * The request is completed with the missing time as UTIME_OMIT, which utimensat honours.
   *
   * <p>Notifications queued by callbacks ({@link #invalidateAttributesAfterReply}) go out after
   * the reply, when the kernel no longer waits on this request.
   */
  static final class Worker {
    private final Pointer se;
    private final Pointer ch;
    private final int fd;
    /** The request being processed (in header first); moves with each ring entry's request. */
    Pointer mem;
    private final Pointer buf;
    private final int pipeRead;
    private final Pointer pipeCh;
    private final Pointer reply = Memory.allocateDirect(RT, ATTR_REPLY_ROOM, true);
    private final Pointer notify = Memory.allocateDirect(RT, OUT_HEADER + 24, true);
    private long[] pending = new long[4];
    private int pendingCount;
    /**
     * The kill flag of the current request, read before libfuse sees it: libfuse2 masks
     * SETATTR's valid bits to those it knows, in the request buffer itself.
     */
    boolean killSuidGid;
    /**
     * io_uring transport only: the channel whose send puts the reply into the current ring
     * entry (out header into its header area, the rest into its payload buffer); null on the
     * /dev/fuse transport.
     */
    private final Pointer uringCh;
    private long replyHeader;
    private long replyPayload;
    private long replyCap;
    private long commitId;
    private boolean replied;

    Worker(Pointer se, Pointer ch, int fd, Pointer mem, Pointer buf) throws IOException {
      this(se, ch, fd, mem, buf, null);
    }

    Worker(Pointer se, Pointer ch, int fd, Pointer mem, Pointer buf, Pointer uringCh)
        throws IOException {
      this.uringCh = uringCh;
      this.se = se;
      this.ch = ch;
      this.fd = fd;
      this.mem = mem;
      this.buf = buf;
      int[] pipe = LibC.pipe();
      LibC.setNonBlocking(pipe[0]); // a request libfuse does not answer must not hang us
      pipeRead = pipe[0];
      pipeCh = FUSE.fuse_kern_chan_new(pipe[1]); // for the process's lifetime, as the worker
    }

    void process() {
      int opcode = mem.getInt(4);
      if (opcode > 0 && opcode < REQUESTS.length) {
        REQUESTS[opcode].increment();
      }
      killSuidGid = switch (opcode) {
        case FUSE_WRITE -> (mem.getInt(IN_HEADER + 20) & FUSE_WRITE_KILL_SUIDGID) != 0;
        case FUSE_SETATTR -> (mem.getInt(IN_HEADER) & FATTR_KILL_SUIDGID) != 0;
        default -> false;
      };
      switch (opcode) {
        case FUSE_SETATTR -> completeTimes();
        case FUSE_LINK -> invalidateAfterReply(mem.getLong(IN_HEADER)); // fuse_link_in.oldnodeid
        case FUSE_GETXATTR -> GETXATTRS.increment();
        case FUSE_FORGET -> forgetListener.accept(mem.getLong(16));
        case FUSE_BATCH_FORGET -> { // fuse_batch_forget_in {count, dummy}, then {nodeid, nlookup}
          int count = mem.getInt(IN_HEADER);
          for (int i = 0; i < count; i++) {
            forgetListener.accept(mem.getLong(IN_HEADER + 8 + 16L * i));
          }
        }
        default -> { }
      }
      boolean attrs = opcode == FUSE_LOOKUP || opcode == FUSE_GETATTR || opcode == FUSE_SETATTR
          || opcode == FUSE_LINK || opcode == FUSE_CREATE;
      if (uringCh != null) {
        replied = false;
        if (opcode == FUSE_FLUSH) {
          // Nothing to do, as below; but answered 0 rather than ENOSYS, so the kernel keeps
          // sending it: over io_uring a FLUSH tells UNLINK and RENAME that the close's RELEASE
          // may be on its way on another thread (see RELEASES_IN_FLIGHT).
          IO.putInt(replyHeader, OUT_HEADER);
          IO.putInt(replyHeader + 4, 0);
          IO.putLong(replyHeader + 8, commitId);
          IO.putInt(replyHeader + URING_PAYLOAD_SZ, 0);
          replied = true;
        } else if (opcode == FUSE_RELEASE) {
          try {
            synchronized (HIDE_LOCK) {
              FUSE.fuse_session_process_buf(se, buf, uringCh);
            }
          } finally {
            RELEASES_IN_FLIGHT.decrementAndGet();
          }
        } else if (opcode == FUSE_UNLINK || opcode == FUSE_RENAME || opcode == FUSE_RENAME2) {
          awaitReleases();
          synchronized (HIDE_LOCK) {
            FUSE.fuse_session_process_buf(se, buf, uringCh);
          }
        } else {
          FUSE.fuse_session_process_buf(se, buf, uringCh);
        }
        if (!replied) { // libfuse answered nothing: the entry must still be committed
          IO.putInt(replyHeader, OUT_HEADER);
          IO.putInt(replyHeader + 4, -LibC.EIO);
          IO.putLong(replyHeader + 8, commitId);
          IO.putInt(replyHeader + URING_PAYLOAD_SZ, 0);
          LOG.debug("libfuse sent no reply to FUSE opcode {}; answered EIO", opcode);
        } else if (attrs && IO.getInt(replyHeader + 4) == 0) {
          patchAttributes(Pointer.wrap(RT, replyPayload), 0,
              IO.getInt(replyHeader + URING_PAYLOAD_SZ), opcode);
        }
      } else if (opcode == FUSE_FLUSH) {
        // close() is not fsync(): what was written is in the cache already, and locks are the
        // kernel's (we implement none), so FLUSH has nothing to do. ENOSYS makes the kernel
        // stop sending it (fc->no_flush; close still returns 0): one round trip less per close.
        replyError(ENOSYS);
      } else if (attrs) {
        processPatchingAttributes(opcode);
      } else if (opcode == FUSE_RELEASE || opcode == FUSE_UNLINK || opcode == FUSE_RENAME
          || opcode == FUSE_RENAME2) {
        synchronized (HIDE_LOCK) {
          FUSE.fuse_session_process_buf(se, buf, ch);
        }
      } else {
        FUSE.fuse_session_process_buf(se, buf, ch);
      }
      if (pendingCount > 0) {
        sendInvalidations();
      }
    }

    /** Answers the request in {@link #mem} with -errno and no payload (fuse_out_header). */
    private void replyError(int errno) {
      reply.putInt(0, OUT_HEADER);
      reply.putInt(4, -errno);
      reply.putLong(8, mem.getLong(8)); // fuse_in_header.unique
      long n = LibC.write(fd, reply.address(), OUT_HEADER);
      if (n < 0 && n != -ENOENT) { // ENOENT: the request was interrupted meanwhile
        LOG.warn("sending error {} for FUSE opcode {} failed: {}", errno, mem.getInt(4),
            LibC.strerror((int) -n));
      }
    }

    /** SETATTR with one time only: the other one becomes UTIME_OMIT (fuse_setattr_in). */
    private void completeTimes() {
      int valid = mem.getInt(IN_HEADER);
      boolean atime = (valid & FATTR_ATIME) != 0;
      boolean mtime = (valid & FATTR_MTIME) != 0;
      if (atime == mtime) {
        return;
      }
      if (atime) {
        mem.putLong(IN_HEADER + 40, 0);
        mem.putInt(IN_HEADER + 60, UTIME_OMIT);
        valid = (valid | FATTR_MTIME) & ~FATTR_MTIME_NOW;
      } else {
        mem.putLong(IN_HEADER + 32, 0);
        mem.putInt(IN_HEADER + 56, UTIME_OMIT);
        valid = (valid | FATTR_ATIME) & ~FATTR_ATIME_NOW;
      }
      mem.putInt(IN_HEADER, valid);
    }

    private void processPatchingAttributes(int opcode) {
      FUSE.fuse_session_process_buf(se, buf, pipeCh);
      long len = LibC.read(pipeRead, reply.address(), ATTR_REPLY_ROOM);
      if (len < OUT_HEADER) {
        return; // no reply was sent (nothing to forward)
      }
      if (reply.getInt(4) == 0) { // fuse_out_header.error
        patchAttributes(reply, OUT_HEADER, len - OUT_HEADER, opcode);
      }
      long n = LibC.write(fd, reply.address(), len);
      if (n < 0 && n != -ENOENT) { // ENOENT: the request was interrupted meanwhile
        LOG.warn("sending the reply to FUSE opcode {} failed: {}", opcode,
            LibC.strerror((int) -n));
      }
    }

    /**
     * A successful reply's body ({@code bodyLen} bytes at {@code body} of {@code r}) that
     * carries the attributes of a non-directory with more than one link is marked valid for no
     * time; see the class comment.
     */
    private static void patchAttributes(Pointer r, long body, long bodyLen, int opcode) {
      boolean entry = opcode != FUSE_GETATTR && opcode != FUSE_SETATTR;
      int attr = entry ? ENTRY_OUT_ATTR : ATTR_OUT_ATTR;
      if (bodyLen >= attr + ATTR_SIZE && (!entry || r.getLong(body) != 0)) {
        int mode = r.getInt(body + attr + ATTR_MODE);
        if ((mode & S_IFMT) != S_IFDIR && r.getInt(body + attr + ATTR_NLINK) > 1) {
          // attr_valid and attr_valid_nsec, in fuse_entry_out or fuse_attr_out
          r.putLong(body + (entry ? 24 : 0), 0);
          r.putInt(body + (entry ? 36 : 8), 0);
        }
      }
    }

    /** Called by a ring thread as soon as it sees a request: tracks closes in flight. */
    static void received(int opcode, long nodeid) {
      if (opcode == FUSE_RELEASE) {
        RELEASES_IN_FLIGHT.incrementAndGet();
        FLUSHED.remove(nodeid);
      } else if (opcode == FUSE_FLUSH) {
        long now = System.nanoTime();
        FLUSHED.put(nodeid, now);
        if (FLUSHED.size() > 1024) { // closes that were not the last: no RELEASE removes them
          FLUSHED.values().removeIf(t -> now - t > FLUSH_RELEASE_NANOS);
        }
      }
    }

    /** See {@link #RELEASES_IN_FLIGHT}. */
    private static void awaitReleases() {
      long start = System.nanoTime();
      while (true) {
        long now = System.nanoTime();
        if (now - start > RELEASE_WAIT_NANOS) {
          return;
        }
        FLUSHED.values().removeIf(t -> now - t > FLUSH_RELEASE_NANOS);
        if (RELEASES_IN_FLIGHT.get() == 0 && FLUSHED.isEmpty()) {
          return;
        }
        Thread.onSpinWait();
      }
    }

    /**
     * Processes the request that a ring entry received, rebuilt contiguous at {@code start}
     * ({@code len} bytes, in header first); the reply goes into the entry: its out header at
     * {@code header}, its body into {@code payload} ({@code cap} bytes).
     */
    void processFromRing(long start, int len, long header, long payload, long cap, long id) {
      mem = Pointer.wrap(RT, start);
      buf.putAddress(FUSE_BUF_MEM, start);
      buf.putLong(0, len);
      replyHeader = header;
      replyPayload = payload;
      replyCap = cap;
      commitId = id;
      process();
    }

    /** fuse_chan_ops.send of the ring channel: gathers libfuse's reply into the entry. */
    int sendToRing(long iov, long count) {
      long pos = 0;
      boolean overflow = false;
      for (long i = 0; i < count; i++) {
        long base = IO.getAddress(iov + 16 * i);
        long n = IO.getLong(iov + 16 * i + 8);
        if (pos < OUT_HEADER) {
          long h = Math.min(n, OUT_HEADER - pos);
          IO.copyMemory(base, replyHeader + pos, h);
          base += h;
          n -= h;
          pos += h;
        }
        if (n > 0) {
          if (pos - OUT_HEADER + n > replyCap) {
            overflow = true;
          } else {
            IO.copyMemory(base, replyPayload + pos - OUT_HEADER, n);
          }
          pos += n;
        }
      }
      if (pos < OUT_HEADER || overflow) {
        LOG.warn("a reply of {} bytes does not fit a ring entry ({} bytes); answered EIO", pos,
            replyCap);
        IO.putInt(replyHeader, OUT_HEADER);
        IO.putInt(replyHeader + 4, -LibC.EIO);
        IO.putLong(replyHeader + 8, commitId);
        pos = OUT_HEADER;
      }
      IO.putInt(replyHeader + URING_PAYLOAD_SZ, (int) (pos - OUT_HEADER));
      replied = true;
      return 0;
    }

    void invalidateAfterReply(long nodeid) {
      if (pendingCount == pending.length) {
        pending = java.util.Arrays.copyOf(pending, pendingCount * 2);
      }
      pending[pendingCount++] = nodeid;
    }

    /** FUSE_NOTIFY_INVAL_INODE with offset -1: attributes only, the page cache stays. */
    private void sendInvalidations() {
      for (int i = 0; i < pendingCount; i++) {
        notify.putInt(0, OUT_HEADER + 24);
        notify.putInt(4, FUSE_NOTIFY_INVAL_INODE);
        notify.putLong(8, 0);
        notify.putLong(OUT_HEADER, pending[i]);
        notify.putLong(OUT_HEADER + 8, -1);
        notify.putLong(OUT_HEADER + 16, 0);
        long n = LibC.write(fd, notify.address(), OUT_HEADER + 24);
        if (n < 0 && n != -ENOENT) { // ENOENT: the kernel holds no such inode any more
          LOG.debug("invalidating the attributes of FUSE node {} failed: {}", pending[i],
              LibC.strerror((int) -n));
        }
      }
      pendingCount = 0;
    }
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
    int fd = fuseFd;
    if (fd >= 0 && LEAD.heldBy(Thread.currentThread()) && LibC.readableNow(fd)) {
      handOff();
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
