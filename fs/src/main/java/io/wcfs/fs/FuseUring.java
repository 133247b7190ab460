package io.wcfs.fs;

import static io.wcfs.fs.FuseProtocol.*;

import io.wcfs.nativ.IoUring;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * FUSE over io_uring (Linux 6.14+, Documentation/filesystems/fuse-io-uring.rst): once INIT was
 * answered with FUSE_OVER_IO_URING, the kernel delivers requests into ring entries we register
 * instead of /dev/fuse reads, and takes the reply with the command that fetches the next
 * request (COMMIT_AND_FETCH): one io_uring_enter per request instead of a read and a write.
 *
 * <p>The kernel has one queue per possible CPU and puts a request on the queue of the CPU its
 * caller runs on; it holds every request until each queue has an entry. Each queue is served
 * by several threads, each with its own ring (created on that thread, single issuer) holding
 * one entry: a request that blocks (an fsync waiting for the device) holds up only its own
 * thread, and the queue's other entries keep serving. The kernel hands a request to the entry
 * that became free last, so a lone synchronous caller keeps meeting the same warm thread.
 *
 * <p>An entry is a header area (struct fuse_uring_req_header: the in/out header, the opcode's
 * own header, the entry's commit id and payload size) and a payload buffer of max_write bytes.
 * The payload buffer sits {@link #HEADER_ROOM} bytes into a larger buffer, so the request
 * libfuse2 expects (in header, opcode header, payload, contiguous) is rebuilt by copying only
 * the two headers in front of the payload. libfuse2 processes it as a /dev/fuse request; its
 * reply goes through a channel of ours whose send puts the out header into the header area and
 * the rest into the payload buffer. FORGET, INTERRUPT and notifications stay on /dev/fuse.
 */
final class FuseUring {
  private static final Logger LOG = LoggerFactory.getLogger(FuseUring.class);
  static final Path PARAMETER = Path.of("/sys/module/fuse/parameters/enable_uring");
  private static final Runtime RT = Runtime.getRuntime(LibFuse.api());
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();
  /** Room ahead of the payload for the in header and the opcode's header (at most 128). */
  private static final int HEADER_ROOM = 4096;
  /** fuse_uring_cmd_req in the SQE's command bytes: flags, commit_id, qid. */
  private static final int CMD_COMMIT_ID = IoUring.SQE_CMD + 8;
  private static final int CMD_QID = IoUring.SQE_CMD + 16;
  private static final int ENOTCONN = 107;
  private static final int ECONNABORTED = 103;
  private static final int ECANCELED = 125;
  private static final int FULL_FLAGS = IoUring.SETUP_SQE128 | IoUring.SETUP_SINGLE_ISSUER
      | IoUring.SETUP_DEFER_TASKRUN;

  /** --fuse-transport. */
  enum Mode {
    AUTO, URING, DEV;

    static Mode parse(String text) {
      return switch (text.trim().toLowerCase(Locale.ROOT)) {
        case "auto" -> AUTO;
        case "uring", "io_uring", "io-uring" -> URING;
        case "dev", "/dev/fuse" -> DEV;
        default -> throw new UsageException("--fuse-transport " + text + " is unknown: give"
            + " auto, uring or dev");
      };
    }
  }

  /** The setup flags rings are created with (the probe in prepareKernel picks them). */
  private static volatile int ringFlags = FULL_FLAGS;
  private static volatile String shape = "";
  /** The reply channel's ops (struct fuse_chan_ops), kept reachable with its callback. */
  private static Pointer chanOps;
  private static final Send SEND = new Send();
  /** Per queue: whether one of its threads is spinning for the next request. */
  private static java.util.concurrent.atomic.AtomicInteger[] spinners;
  /** Counted down by each ring thread once its REGISTER was accepted or failed. */
  private static java.util.concurrent.CountDownLatch started =
      new java.util.concurrent.CountDownLatch(0);
  /** Per queue: entries the kernel accepted. */
  private static java.util.concurrent.atomic.AtomicIntegerArray registered;
  /** Why the rings are not in use (the kernel refused an entry); null while they are. */
  private static final java.util.concurrent.atomic.AtomicReference<String> refused =
      new java.util.concurrent.atomic.AtomicReference<>();
  /** Requests received from rings (the rest of fuse_requests came over /dev/fuse). */
  private static final java.util.concurrent.atomic.LongAdder RING_REQUESTS =
      new java.util.concurrent.atomic.LongAdder();

  static long ringRequests() {
    return RING_REQUESTS.sum();
  }

  private FuseUring() {}

  /** Routes libfuse's reply to the worker of the calling thread, which knows its entry. */
  public static final class Send implements LibFuse.SendCallback {
    @Override
    public int send(long ch, long iov, long count) {
      FuseWorker w = FuseWorker.current();
      return w == null ? -LibC.EIO : w.sendToRing(iov, count);
    }
  }

  /**
   * Before the mount: whether INIT may offer io_uring. For {@code auto} and {@code uring}, the
   * kernel must have the enable_uring parameter (a root daemon sets it to Y, and says so) and
   * let us create a ring; otherwise one log line, and /dev/fuse.
   */
  static boolean prepareKernel(Mode mode) {
    if (mode == Mode.DEV) {
      return false;
    }
    if (!Files.exists(PARAMETER)) {
      LOG.info("--fuse-transport {}: this kernel has no FUSE over io_uring ({} is absent; it"
          + " needs Linux 6.14+ with CONFIG_FUSE_IO_URING); serving over /dev/fuse",
          mode.name().toLowerCase(Locale.ROOT), PARAMETER);
      return false;
    }
    try {
      String v = Files.readString(PARAMETER).trim();
      if (!v.equals("Y") && !v.equals("1")) {
        if (LibC.geteuid() != 0) {
          LOG.info("--fuse-transport {}: {} is {} and only root may set it; serving over"
              + " /dev/fuse", mode.name().toLowerCase(Locale.ROOT), PARAMETER, v);
          return false;
        }
        Files.writeString(PARAMETER, "Y", StandardCharsets.US_ASCII);
        LOG.warn("set {} to Y (it was {}) to serve FUSE over io_uring; this is machine-wide and"
            + " lasts until reboot or `echo N > {}`", PARAMETER, v, PARAMETER);
      }
    } catch (IOException e) {
      LOG.info("--fuse-transport {}: cannot read or set {} ({}); serving over /dev/fuse",
          mode.name().toLowerCase(Locale.ROOT), PARAMETER, e.toString());
      return false;
    }
    try (IoUring probe = IoUring.create(1, FULL_FLAGS)) {
      ringFlags = FULL_FLAGS;
    } catch (NativeIOException e) {
      try (IoUring probe = IoUring.create(1, IoUring.SETUP_SQE128)) {
        ringFlags = IoUring.SETUP_SQE128; // before 6.1: no DEFER_TASKRUN
      } catch (NativeIOException e2) {
        LOG.info("--fuse-transport {}: io_uring_setup failed ({}); serving over /dev/fuse",
            mode.name().toLowerCase(Locale.ROOT), e2.getMessage());
        return false;
      }
    }
    return true;
  }

  /** The kernel's queue count: num_possible_cpus(), from /sys/devices/system/cpu/possible. */
  static int possibleCpus() {
    try {
      String text = Files.readString(Path.of("/sys/devices/system/cpu/possible")).trim();
      int n = 0;
      for (String part : text.split(",")) {
        int dash = part.indexOf('-');
        n += dash < 0 ? 1 : Integer.parseInt(part.substring(dash + 1))
            - Integer.parseInt(part.substring(0, dash)) + 1;
      }
      return n;
    } catch (IOException | RuntimeException e) {
      return java.lang.Runtime.getRuntime().availableProcessors();
    }
  }

  static String describe() {
    return shape;
  }

  /**
   * Starts the ring threads: {@code threads} spread over the kernel's queues, at least two per
   * queue (one with {@code threads} 1). Each registers its entry at once; the kernel releases the held requests once every
   * queue has one.
   */
  static List<Thread> start(Pointer se, int fd, long payloadSize, int threads, long spinNanos) {
    int queues = possibleCpus();
    // --threads 1 (serialize): one per queue, the least the kernel takes
    int perQueue = threads == 1 ? 1 : Math.max(2, (threads + queues - 1) / queues);
    shape = queues + " queues x " + perQueue + " threads, " + payloadSize / 1024
        + " KiB payload per entry";
    synchronized (FuseUring.class) {
      if (chanOps == null) {
        Pointer ops = Memory.allocateDirect(RT, 24, true); // receive, send, destroy
        ops.putPointer(8, RT.getClosureManager().getClosurePointer(LibFuse.SendCallback.class,
            SEND));
        chanOps = ops;
      }
    }
    List<Thread> out = new ArrayList<>();
    started = new java.util.concurrent.CountDownLatch(queues * perQueue);
    registered = new java.util.concurrent.atomic.AtomicIntegerArray(queues);
    spinners = new java.util.concurrent.atomic.AtomicInteger[queues];
    for (int q = 0; q < queues; q++) {
      spinners[q] = new java.util.concurrent.atomic.AtomicInteger();
    }
    for (int q = 0; q < queues; q++) {
      for (int t = 0; t < perQueue; t++) {
        int qid = q;
        Thread th = new Thread(() -> serveQueue(se, fd, qid, payloadSize, spinNanos),
            "wcfs-uring-" + q + "-" + t);
        th.setDaemon(true);
        out.add(th);
        th.start();
      }
    }
    try {
      if (!started.await(10, java.util.concurrent.TimeUnit.SECONDS)) {
        LOG.warn("FUSE ring threads still starting after 10 s");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    for (int q = 0; q < queues; q++) {
      if (registered.get(q) == 0 && refused.get() == null) {
        // A queue without an entry would make the kernel hold every request for good. A
        // refused REGISTER makes it fall back to /dev/fuse instead: send one (one iovec).
        refused.compareAndSet(null, "no ring entry for queue " + q);
        forceFallback(fd);
      }
    }
    String why = refused.get();
    if (why != null) {
      LOG.error("FUSE over io_uring could not be set up ({}); the kernel serves over /dev/fuse",
          why);
      shape = "";
    }
    return out;
  }

  /** Whether the rings carry the requests (false: the kernel fell back to /dev/fuse). */
  static boolean working() {
    return refused.get() == null;
  }

  /** A REGISTER the kernel must refuse (one iovec): it then turns io_uring off for the mount. */
  private static void forceFallback(int fd) {
    try (IoUring ring = IoUring.create(1, ringFlags)) {
      long sqe = ring.nextSqe();
      IO.putByte(sqe + IoUring.SQE_OPCODE, (byte) IoUring.OP_URING_CMD);
      IO.putInt(sqe + IoUring.SQE_FD, fd);
      IO.putInt(sqe + IoUring.SQE_CMD_OP, FUSE_IO_URING_CMD_REGISTER);
      IO.putInt(sqe + IoUring.SQE_LEN, 1);
      ring.enter(1);
    } catch (NativeIOException e) {
      LOG.error("could not make the kernel fall back to /dev/fuse: {}", e.getMessage());
    }
  }

  /** One thread: one ring with one entry of queue {@code qid}, served until the unmount. */
  private static void serveQueue(Pointer se, int fd, int qid, long payloadSize,
      long maxSpin) {
    long spin = maxSpin;
    long header = IO.allocateMemory(REQ_HEADER, true);
    long buffer = IO.allocateMemory(HEADER_ROOM + payloadSize, false);
    long payload = buffer + HEADER_ROOM;
    long iov = IO.allocateMemory(32, true);
    IO.putAddress(iov, header);
    IO.putLong(iov + 8, REQ_HEADER);
    IO.putAddress(iov + 16, payload);
    IO.putLong(iov + 24, payloadSize);
    Pointer ch = LibFuse.api().fuse_chan_new(chanOps, fd, HEADER_ROOM + payloadSize, null);
    IoUring ring = null;
    boolean counted = false;
    try {
      Pointer bufStruct = Memory.allocateDirect(RT, 40, true); // struct fuse_buf
      FuseWorker worker = new FuseWorker(se, ch, fd, Pointer.wrap(RT, buffer),
          bufStruct, ch);
      FuseWorker.setCurrent(worker);
      ring = IoUring.create(2, ringFlags);
      long sqe = ring.nextSqe();
      IO.putByte(sqe + IoUring.SQE_OPCODE, (byte) IoUring.OP_URING_CMD);
      IO.putInt(sqe + IoUring.SQE_FD, fd);
      IO.putInt(sqe + IoUring.SQE_CMD_OP, FUSE_IO_URING_CMD_REGISTER);
      IO.putLong(sqe + IoUring.SQE_ADDR, iov);
      // iovecs: header, payload. WCFS_URING_REFUSE_QUEUE=Q sends queue Q's with one, which
      // the kernel refuses: for testing the fallback to /dev/fuse, not for use.
      boolean refuse = String.valueOf(qid).equals(System.getenv("WCFS_URING_REFUSE_QUEUE"));
      IO.putInt(sqe + IoUring.SQE_LEN, refuse ? 1 : 2);
      IO.putShort(sqe + CMD_QID, (short) qid);
      int rc = ring.enter(0, true);
      if (rc < 0) {
        LOG.error("io_uring_enter (FUSE register, queue {}) failed: {}", qid,
            LibC.strerror(-rc));
        return;
      }
      long first = ring.peekCqe(); // a refused REGISTER completes at once
      if (first != 0 && IoUring.cqeRes(first) < 0) {
        refused.compareAndSet(null, "the kernel refused the entry of queue " + qid + ": "
            + LibC.strerror(-IoUring.cqeRes(first)) + " (see dmesg)");
        return;
      }
      registered.incrementAndGet(qid);
      started.countDown();
      counted = true;
      while (true) {
        // Spin first (one thread per queue at a time): the kernel gives the next request to
        // the entry committed last, this one, and catching it here saves the wakeup, which on
        // a VM costs more than the request. Polling a DEFER_TASKRUN ring is entering it
        // without waiting (that runs the task work that fills the entry). The spin adapts
        // as the /dev/fuse leader's does: doubled when it caught a request, halved when not.
        if (spin > 0 && spinners[qid].compareAndSet(0, 1)) {
          boolean caught = false;
          try {
            long until = System.nanoTime() + spin;
            do {
              rc = ring.enter(0, true);
              if (ring.peekCqe() != 0) {
                caught = true;
                break;
              }
              Thread.onSpinWait();
            } while (rc >= 0 && System.nanoTime() < until);
          } finally {
            spinners[qid].set(0);
          }
          spin = caught ? Math.min(maxSpin, Math.max(2 * spin, maxSpin / 8))
              : Math.max(maxSpin / 8, spin / 2);
          if (caught) {
            rc = 0;
          } else {
            rc = ring.enter(1);
          }
        } else {
          rc = ring.enter(1);
        }
        if (rc == -LibC.EINTR) {
          continue;
        }
        if (rc < 0) {
          LOG.error("io_uring_enter (FUSE queue {}) failed: {}", qid, LibC.strerror(-rc));
          return;
        }
        long cqe = ring.peekCqe();
        if (cqe == 0) {
          continue;
        }
        int res = IoUring.cqeRes(cqe);
        ring.cqeSeen();
        if (res < 0) {
          if (res == -ENOTCONN || res == -ECONNABORTED || res == -ECANCELED) {
            LOG.debug("FUSE ring entry of queue {} ended: {}", qid, LibC.strerror(-res));
          } else {
            LOG.error("the kernel refused the FUSE ring entry of queue {}: {} (see dmesg)", qid,
                LibC.strerror(-res));
          }
          return;
        }
        RING_REQUESTS.increment();
        int len = IO.getInt(header);
        int payloadLen = IO.getInt(header + URING_PAYLOAD_SZ);
        long id = IO.getLong(header + COMMIT_ID);
        int opLen = len - IN_HEADER - payloadLen;
        if (opLen < 0 || opLen > OP_IN) {
          LOG.error("a ring request of {} bytes with a payload of {} does not add up; answered"
              + " EIO", len, payloadLen);
          IO.putInt(header, 16);
          IO.putInt(header + 4, -LibC.EIO);
          IO.putLong(header + 8, id);
          IO.putInt(header + URING_PAYLOAD_SZ, 0);
        } else {
          long start = payload - IN_HEADER - opLen;
          IO.copyMemory(header, start, IN_HEADER);
          IO.copyMemory(header + OP_IN, start + IN_HEADER, opLen);
          worker.processFromRing(start, len, header, payload, payloadSize, id);
        }
        sqe = ring.nextSqe();
        if (sqe == 0) { // cannot happen (one command in flight, two slots): never write at 0
          LOG.error("the SQ ring of FUSE queue {} is full; ending this thread", qid);
          return;
        }
        IO.putByte(sqe + IoUring.SQE_OPCODE, (byte) IoUring.OP_URING_CMD);
        IO.putInt(sqe + IoUring.SQE_FD, fd);
        IO.putInt(sqe + IoUring.SQE_CMD_OP, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
        IO.putLong(sqe + CMD_COMMIT_ID, id);
        IO.putShort(sqe + CMD_QID, (short) qid);
      }
    } catch (IOException | RuntimeException e) {
      LOG.error("FUSE ring thread of queue {} failed", qid, e);
    } finally {
      if (!counted) {
        started.countDown();
      }
      if (ring != null) {
        ring.close();
      }
      // header, buffer and iov stay allocated: the kernel may still hold the entry's addresses
      // until the connection is torn down (the process ends soon after anyway)
    }
  }
}
