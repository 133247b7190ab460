package io.wcfs.nativ;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;

/**
 * One io_uring instance driven by raw syscalls (io_uring_setup, io_uring_enter) against the
 * kernel's ring layout (include/uapi/linux/io_uring.h): the submission and completion rings and
 * the SQE array are mapped into this process and read and written in place. Meant for one
 * thread: nothing here is synchronized, and rings created with {@link #SETUP_SINGLE_ISSUER}
 * must be used by the thread that created them.
 *
 * <p>Memory ordering: the kernel publishes the CQ tail and consumes the SQ head with
 * acquire/release semantics; we read the CQ tail and SQ head with an acquire fence after the
 * load, and publish the SQ tail and CQ head with a release fence before the store (VarHandle
 * fences around jffi's plain accesses, which compile to plain loads and stores).
 */
public final class IoUring implements AutoCloseable {
  public static final int SETUP_COOP_TASKRUN = 1 << 8;
  public static final int SETUP_SQE128 = 1 << 10;
  public static final int SETUP_SINGLE_ISSUER = 1 << 12;
  public static final int SETUP_DEFER_TASKRUN = 1 << 13;
  public static final int OP_URING_CMD = 46;
  /** Offsets in an SQE (struct io_uring_sqe). */
  public static final int SQE_OPCODE = 0;
  public static final int SQE_FD = 4;
  /** cmd_op of IORING_OP_URING_CMD shares the u64 at 8 with off. */
  public static final int SQE_CMD_OP = 8;
  public static final int SQE_ADDR = 16;
  public static final int SQE_LEN = 24;
  public static final int SQE_USER_DATA = 32;
  /** The command's own bytes (cmd[]): 16 in a 64-byte SQE, 80 with SQE128. */
  public static final int SQE_CMD = 48;

  private static final int NR_IO_URING_SETUP = 425; // the same on every architecture
  private static final int NR_IO_URING_ENTER = 426;
  private static final int ENTER_GETEVENTS = 1;
  private static final long OFF_SQ_RING = 0;
  private static final long OFF_CQ_RING = 0x8000000L;
  private static final long OFF_SQES = 0x10000000L;
  private static final int FEAT_SINGLE_MMAP = 1;
  private static final int PARAMS_SIZE = 120;
  private static final int CQE_SIZE = 16;

  /** libc's syscall(2); one argument a pointer, see LibC's note on jnr's all-primitive path. */
  public interface Sys {
    @SaveError
    long syscall(long nr, long a1, long a2, long a3, long a4, Pointer a5);
  }

  private static final Sys SYS = LibraryLoader.create(Sys.class).failImmediately().load("c");
  private static final Runtime RT = Runtime.getRuntime(SYS);
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();

  private final int fd;
  private final long sqRing;
  private final long sqRingSize;
  private final long cqRing;
  private final long cqRingSize;
  private final long sqes;
  private final long sqesSize;
  private final int sqeSize;
  private final long sqHead;
  private final long sqTail;
  private final int sqMask;
  private final int sqEntries;
  private final long cqHead;
  private final long cqTail;
  private final int cqMask;
  private final long cqes;
  /** Our copies: the SQ tail we write, the CQ head we advance. */
  private int sqTailLocal;
  private int cqHeadLocal;
  /** SQEs filled but not yet taken by the kernel. */
  private int toSubmit;

  private IoUring(int fd, long params, int flags) throws NativeIOException {
    this.fd = fd;
    sqeSize = (flags & SETUP_SQE128) != 0 ? 128 : 64;
    int sqEnt = IO.getInt(params);
    int cqEnt = IO.getInt(params + 4);
    int features = IO.getInt(params + 20);
    long sqOff = params + 40;
    long cqOff = params + 80;
    long sqSize = IO.getInt(sqOff + 24) + 4L * sqEnt; // array + entries
    long cqSize = IO.getInt(cqOff + 20) + (long) CQE_SIZE * cqEnt; // cqes + entries
    boolean single = (features & FEAT_SINGLE_MMAP) != 0;
    if (single) {
      sqSize = Math.max(sqSize, cqSize);
      cqSize = sqSize;
    }
    long sq = LibC.mmapShared(fd, sqSize, OFF_SQ_RING);
    long cq = single ? sq : LibC.mmapShared(fd, cqSize, OFF_CQ_RING);
    long sqesLen = (long) sqeSize * sqEnt;
    long s = LibC.mmapShared(fd, sqesLen, OFF_SQES);
    sqRing = sq;
    sqRingSize = sqSize;
    cqRing = single ? 0 : cq;
    cqRingSize = cqSize;
    sqes = s;
    sqesSize = sqesLen;
    sqHead = sq + IO.getInt(sqOff);
    sqTail = sq + IO.getInt(sqOff + 4);
    sqMask = IO.getInt(sq + IO.getInt(sqOff + 8));
    sqEntries = IO.getInt(sq + IO.getInt(sqOff + 12));
    long array = sq + IO.getInt(sqOff + 24);
    for (int i = 0; i < sqEntries; i++) {
      IO.putInt(array + 4L * i, i); // slot i submits SQE i, always
    }
    cqHead = cq + IO.getInt(cqOff);
    cqTail = cq + IO.getInt(cqOff + 4);
    cqMask = IO.getInt(cq + IO.getInt(cqOff + 8));
    cqes = cq + IO.getInt(cqOff + 20);
    sqTailLocal = IO.getInt(sqTail);
    cqHeadLocal = IO.getInt(cqHead);
  }

  /**
   * A ring of at least {@code entries} SQEs with setup {@code flags}; throws with the kernel's
   * errno (EINVAL for flags it does not know, ENOSYS without io_uring, EPERM where
   * io_uring_disabled forbids it).
   */
  public static IoUring create(int entries, int flags) throws NativeIOException {
    long params = IO.allocateMemory(PARAMS_SIZE, true);
    try {
      IO.putInt(params + 8, flags);
      long fd = SYS.syscall(NR_IO_URING_SETUP, entries, params, 0, 0, null);
      if (fd < 0) {
        int errno = RT.getLastError();
        throw new NativeIOException("io_uring_setup: " + LibC.strerror(errno), errno);
      }
      try {
        return new IoUring((int) fd, params, flags);
      } catch (NativeIOException | RuntimeException e) {
        LibC.close((int) fd);
        throw e;
      }
    } finally {
      IO.freeMemory(params);
    }
  }

  public int sqEntries() {
    return sqEntries;
  }

  /** A zeroed SQE to fill, queued for the next {@link #enter}; 0 if the SQ ring is full. */
  public long nextSqe() {
    int head = IO.getInt(sqHead);
    java.lang.invoke.VarHandle.acquireFence();
    if (sqTailLocal - head >= sqEntries) {
      return 0;
    }
    long sqe = sqes + (long) (sqTailLocal & sqMask) * sqeSize;
    IO.setMemory(sqe, sqeSize, (byte) 0);
    sqTailLocal++;
    toSubmit++;
    return sqe;
  }

  /**
   * Submits the queued SQEs and, if {@code waitFor} is positive, waits until that many
   * completions are ready (running the ring's task work meanwhile). Returns 0, or -errno
   * (EINTR: call again; what was submitted stays submitted).
   */
  public int enter(int waitFor) {
    return enter(waitFor, waitFor > 0);
  }

  /**
   * As {@link #enter(int)}; with {@code getEvents} and {@code waitFor} 0 it returns at once
   * after running the ring's pending task work, which a ring with {@link #SETUP_DEFER_TASKRUN}
   * needs before completions appear: how to poll such a ring.
   */
  public int enter(int waitFor, boolean getEvents) {
    java.lang.invoke.VarHandle.releaseFence();
    IO.putInt(sqTail, sqTailLocal);
    int flags = getEvents ? ENTER_GETEVENTS : 0;
    long n = SYS.syscall(NR_IO_URING_ENTER, fd, toSubmit, waitFor, flags, null);
    if (n < 0) {
      return -RT.getLastError();
    }
    toSubmit -= (int) Math.min(n, toSubmit);
    return 0;
  }

  /** The next completion's address (see {@link #cqeUserData}, {@link #cqeRes}); 0 if none. */
  public long peekCqe() {
    int tail = IO.getInt(cqTail);
    java.lang.invoke.VarHandle.acquireFence();
    if (cqHeadLocal == tail) {
      return 0;
    }
    return cqes + (long) (cqHeadLocal & cqMask) * CQE_SIZE;
  }

  /** Gives the completion {@link #peekCqe} returned back to the kernel. */
  public void cqeSeen() {
    cqHeadLocal++;
    java.lang.invoke.VarHandle.releaseFence();
    IO.putInt(cqHead, cqHeadLocal);
  }

  public static long cqeUserData(long cqe) {
    return IO.getLong(cqe);
  }

  public static int cqeRes(long cqe) {
    return IO.getInt(cqe + 8);
  }

  @Override
  public void close() {
    try {
      LibC.munmap(sqes, sqesSize);
      LibC.munmap(sqRing, sqRingSize);
      if (cqRing != 0) {
        LibC.munmap(cqRing, cqRingSize);
      }
    } catch (NativeIOException e) {
      // nothing to do: the descriptor's close below frees the ring either way
    }
    try {
      LibC.close(fd);
    } catch (NativeIOException e) {
      // already closed
    }
  }
}
