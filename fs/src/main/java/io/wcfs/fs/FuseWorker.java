package io.wcfs.fs;

import static io.wcfs.fs.FuseProtocol.*;

import io.wcfs.nativ.LibC;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.LongConsumer;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One FUSE worker thread's processing of a request, whichever transport brought it ({@link
 * FuseLoop} over /dev/fuse, {@link FuseUring} over io_uring): counts it, hands it to libfuse2's
 * high-level layer (which calls up into {@link WcfsFileSystem}), and sends the reply, with
 * these corrections to that layer:
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
 * <p>A file unlinked or renamed over while open (libfuse2 runs with -o hard_remove: no
 * .fuse_hidden names): every GETATTR is marked as for an open file, so that fstat of one
 * reaches the filesystem with a null path ({@link #asForOpenFile}).
 *
 * <p>Notifications queued by callbacks ({@link #invalidateAttributesAfterReply}) go out after
 * the reply, when the kernel no longer waits on this request.
 *
 * <p>A worker belongs to one thread; the static methods act on the calling thread's worker.
 */
final class FuseWorker {
  private static final Logger LOG = LoggerFactory.getLogger(FuseWorker.class);
  private static final LibFuse.Api FUSE = LibFuse.api();
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();
  private static final Runtime RT = Runtime.getRuntime(FUSE);
  /** Room for any reply that carries attributes: fuse_entry_out + fuse_open_out is 144 bytes. */
  private static final int ATTR_REPLY_ROOM = 4096;
  /** The worker serving the current thread, for callbacks that act after the reply. */
  private static final ThreadLocal<FuseWorker> WORKER = new ThreadLocal<>();
  /** Requests received, by opcode: what an operation costs in round trips (status). */
  private static final LongAdder[] REQUESTS =
      new LongAdder[OPCODE_NAMES.length];

  static {
    for (int i = 0; i < REQUESTS.length; i++) {
      REQUESTS[i] = new LongAdder();
    }
  }

  /** Requests received so far by opcode name ("fuse_lookup" ...), and their total. */
  static Map<String, Long> requestCounts() {
    Map<String, Long> out = new LinkedHashMap<>();
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
  private static final LongAdder GETXATTRS =
      new LongAdder();
  /** Told the node ids the kernel forgot (FORGET, BATCH_FORGET), before libfuse handles them. */
  private static volatile LongConsumer forgetListener = id -> { };
  /** Told (handle, node) of each file created and opened: the request names its directory. */
  private static volatile java.util.function.BiConsumer<Long, Long> createListener =
      (fh, node) -> { };

  static long getxattrRequests() {
    return GETXATTRS.sum();
  }

  static void onForget(LongConsumer listener) {
    forgetListener = listener;
  }

  static void onCreate(java.util.function.BiConsumer<Long, Long> listener) {
    createListener = listener;
  }

  /** Makes {@code w} this thread's worker (for the callbacks below). */
  static void setCurrent(FuseWorker w) {
    WORKER.set(w);
  }

  static FuseWorker current() {
    return WORKER.get();
  }

  /** The FUSE node id of the request being processed on this thread; -1 outside a worker. */
  static long currentNodeId() {
    FuseWorker w = WORKER.get();
    return w == null ? -1 : w.mem.getLong(16); // fuse_in_header.nodeid
  }

  /**
   * Whether the request being processed on this thread asks us to clear set-ID bits: a WRITE
   * with FUSE_WRITE_KILL_SUIDGID or a SETATTR with FATTR_KILL_SUIDGID, which the kernel sets
   * (with kill-priv v2 only) when the caller lacks CAP_FSETID, or for every chown.
   */
  static boolean killSuidGidRequested() {
    FuseWorker w = WORKER.get();
    return w != null && FuseLoop.killPrivV2() && w.killSuidGid;
  }

  /**
   * Called from a callback: once the reply to the request being processed on this thread is
   * out, the kernel is told to drop its cached attributes of that request's inode (they changed
   * in a way the reply does not show). A no-op outside a FUSE worker.
   */
  static void invalidateAttributesAfterReply() {
    FuseWorker w = WORKER.get();
    if (w != null) {
      w.invalidateAfterReply(w.mem.getLong(16)); // fuse_in_header.nodeid
    }
  }

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
  /** This worker handed the leadership off for a backing read (FuseLoop.handOffForRead). */
  boolean handedOffForRead;

  /** Whether the request in this worker's buffer is a READ (/dev/fuse transport). */
  boolean processingRead() {
    return mem.getInt(4) == FUSE_READ;
  }
  /**
   * io_uring transport only: the channel whose send puts the reply into the current ring
   * entry (out header into its header area, the rest into its payload buffer); null on the
   * /dev/fuse transport.
   */
  private final Pointer uringCh;
  /** The data path without libfuse2; null on the io_uring transport. */
  private final DataRequests data;
  private long replyHeader;
  private long replyPayload;
  private long replyCap;
  private long commitId;
  private boolean replied;

  /** A /dev/fuse worker, receiving requests of up to {@code bufSize} bytes into mem. */
  FuseWorker(Pointer se, Pointer ch, int fd, Pointer mem, Pointer buf, long bufSize)
      throws IOException {
    this(se, ch, fd, mem, buf, null, new DataRequests(fd, bufSize));
  }

  /** An io_uring worker: replies go into ring entries through {@code uringCh}. */
  FuseWorker(Pointer se, Pointer ch, int fd, Pointer mem, Pointer buf, Pointer uringCh)
      throws IOException {
    this(se, ch, fd, mem, buf, uringCh, null);
  }

  private FuseWorker(Pointer se, Pointer ch, int fd, Pointer mem, Pointer buf, Pointer uringCh,
      DataRequests data) throws IOException {
    this.data = data;
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
      case FUSE_GETATTR -> asForOpenFile();
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
      if (opcode == FUSE_FLUSH) { // nothing to do; see below
        IO.putInt(replyHeader, OUT_HEADER);
        IO.putInt(replyHeader + 4, -ENOSYS);
        IO.putLong(replyHeader + 8, commitId);
        IO.putInt(replyHeader + URING_PAYLOAD_SZ, 0);
        replied = true;
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
    } else if (data != null && data.answer(opcode, mem)) {
      // answered without libfuse2's high-level layer
    } else if (opcode == FUSE_FLUSH) {
      // close() is not fsync(): what was written is in the cache already, and locks are the
      // kernel's (we implement none), so FLUSH has nothing to do. ENOSYS makes the kernel
      // stop sending it (fc->no_flush; close still returns 0): one round trip less per close.
      replyError(ENOSYS);
    } else if (opcode == FUSE_INTERRUPT) {
      // Nothing here stops for an interrupt (wcfs takes no -o intr), and a request answered
      // without libfuse2 would leave it one queued for nothing: ENOSYS, and the kernel stops
      // sending them (fc->no_interrupt; a signalled caller still waits for its reply).
      replyError(ENOSYS);
    } else if (attrs) {
      processPatchingAttributes(opcode);
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

  /**
   * GETATTR as if for an open file (FUSE_GETATTR_FH; the kernel sends none with fstat): then
   * libfuse2 resolves the node's path allowing none (flag_nullpath_ok) and calls fgetattr,
   * so fstat of a file unlinked while open reaches WcfsFileSystem, which finds it by its
   * node, instead of being answered ENOENT. The same answer wherever a path exists.
   */
  private void asForOpenFile() {
    mem.putInt(IN_HEADER, mem.getInt(IN_HEADER) | FUSE_GETATTR_FH); // fuse_getattr_in.getattr_flags
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
    if (opcode == FUSE_CREATE && bodyLen >= CREATE_OUT_FH + 8) {
      // fuse_entry_out.nodeid, then fuse_open_out.fh: the node the new handle is open on
      createListener.accept(r.getLong(body + CREATE_OUT_FH), r.getLong(body));
    }
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
