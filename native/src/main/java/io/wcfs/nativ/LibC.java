package io.wcfs.nativ;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.IgnoreError;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import jnr.ffi.types.ssize_t;

/**
 * The few libc calls wcfs needs that the JDK does not expose with native addresses: positional
 * I/O straight from and into FUSE buffers, and the mapping and page-cache syncs the fallback
 * cache memory is built on. Every call's result is checked here and turned into a {@link NativeIOException}.
 *
 * <p>Pointer arguments are raw addresses passed as {@code long}: both supported ABIs (x86-64,
 * arm64) pass pointers and 64-bit integers the same way, and it avoids a Pointer object per call.
 */
public final class LibC {
  private static final boolean ARM64 = System.getProperty("os.arch").equals("aarch64");
  public static final int O_RDONLY = 0;
  public static final int O_WRONLY = 1;
  public static final int O_RDWR = 2;
  public static final int O_CREAT = 0100;
  public static final int O_EXCL = 0200;
  public static final int O_TRUNC = 01000;
  public static final int O_APPEND = 02000;
  public static final int O_CLOEXEC = 02000000;
  /** Differs by architecture: arm64 swapped it with O_DIRECTORY. */
  public static final int O_DIRECT = ARM64 ? 0200000 : 040000;
  public static final int O_DIRECTORY = ARM64 ? 040000 : 0200000;
  public static final int O_NOFOLLOW = ARM64 ? 0100000 : 0400000;
  /** A descriptor that only names a place: for the *at calls, not for reading. */
  public static final int O_PATH = 010000000;

  public static final int PROT_READ = 1;
  public static final int PROT_WRITE = 2;
  public static final int MAP_SHARED = 1;
  /** The same on x86-64 and arm64. */
  public static final int MAP_POPULATE = 0x8000;
  /** sysconf name of the page size; the same number in glibc on x86-64 and arm64. */
  private static final int SC_PAGESIZE = 30;

  public static final int EINTR = 4;
  public static final int EIO = 5;
  public static final int EAGAIN = 11;
  public static final int ENOSPC = 28;

  /**
   * The jnr-ffi view of libc. Public only because jnr-ffi generates its implementation in
   * another class loader; wcfs code calls the checked wrappers below.
   */
  public interface Api {
    @SaveError
    int open(String path, int flags, int mode);

    @SaveError
    int close(int fd);

    @SaveError
    @ssize_t
    long pread(int fd, long buf, @size_t long count, @off_t long offset);

    @SaveError
    @ssize_t
    long pwrite(int fd, long buf, @size_t long count, @off_t long offset);

    @SaveError
    int fsync(int fd);

    @SaveError
    int syncfs(int fd);

    @SaveError
    int ftruncate(int fd, @off_t long length);

    @SaveError
    int fstat(int fd, long statBuf);

    @SaveError
    int futimens(int fd, long times);

    @IgnoreError
    int posix_fallocate(int fd, @off_t long offset, @off_t long len);

    @SaveError
    int fallocate(int fd, int mode, @off_t long offset, @off_t long len);

    // addr as a Pointer: jnr-ffi's all-primitive path for this six-argument call passed a
    // garbage offset (glibc answered EINVAL before the syscall); found by PersistentMemoryTest.
    @SaveError
    jnr.ffi.Pointer mmap(jnr.ffi.Pointer addr, @size_t long length, int prot, int flags, int fd,
        @off_t long offset);

    @SaveError
    int munmap(long addr, @size_t long length);

    @SaveError
    int madvise(long addr, @size_t long length, int advice);

    /** Returns the error number itself (0 on success), not -1 and errno. */
    @IgnoreError
    int posix_fadvise(int fd, @off_t long offset, @off_t long len, int advice);

    @SaveError
    long sysconf(int name);

    @SaveError
    int sync_file_range(int fd, @off_t long offset, @off_t long nbytes, int flags);

    @SaveError
    int fdatasync(int fd);

    @IgnoreError
    String strerror(int errnum);

    @SaveError
    int flock(int fd, int operation);

    @SaveError
    int utimensat(int dirfd, String path, long times, int flags);

    @IgnoreError
    int geteuid();

    @SaveError
    @ssize_t
    long read(int fd, long buf, @size_t long count);

    @SaveError
    int poll(long fds, long nfds, int timeoutMs);

    @SaveError
    int fcntl(int fd, int cmd, int arg);

    /** fcntl with a pointer argument: the struct flock of the lock commands. */
    @SaveError
    int fcntl(int fd, int cmd, long arg);

    @SaveError
    @ssize_t
    long pwritev(int fd, long iov, int iovcnt, @off_t long offset);

    @SaveError
    int pipe(@jnr.ffi.annotations.Out int[] fds);

    @SaveError
    int dup2(int oldfd, int newfd);

    @SaveError
    @ssize_t
    long write(int fd, long buf, @size_t long count);

    // The *at calls: paths relative to a directory descriptor, so that a path is limited by
    // PATH_MAX on its own, not together with the directory's own path.

    @SaveError
    int openat(int dirfd, String path, int flags, int mode);

    @SaveError
    int fstatat(int dirfd, String path, long statBuf, int flags);

    @SaveError
    int mkdirat(int dirfd, String path, int mode);

    @SaveError
    int unlinkat(int dirfd, String path, int flags);

    @SaveError
    int renameat(int olddirfd, String oldpath, int newdirfd, String newpath);

    @SaveError
    int linkat(int olddirfd, String oldpath, int newdirfd, String newpath, int flags);

    @SaveError
    int symlinkat(String target, int newdirfd, String linkpath);

    @SaveError
    @ssize_t
    long readlinkat(int dirfd, String path, long buf, @size_t long size);

    @SaveError
    int mknodat(int dirfd, String path, int mode, long dev);

    @SaveError
    int fchmodat(int dirfd, String path, int mode, int flags);

    @SaveError
    int fchmod(int fd, int mode);

    @SaveError
    int fchownat(int dirfd, String path, int uid, int gid, int flags);

    @SaveError
    int faccessat(int dirfd, String path, int mode, int flags);

    @SaveError
    int fstatvfs(int fd, long buf);

    @SaveError
    long fdopendir(int fd);

    @SaveError
    long readdir(long dirp);

    @SaveError
    int closedir(long dirp);
  }

  static final Api API = LibraryLoader.create(Api.class).failImmediately().load("c");
  static final Runtime RUNTIME = Runtime.getRuntime(API);
  /** The real page size: 4 KiB on x86-64, 4, 16 or 64 KiB on arm64 depending on the kernel. */
  private static final long PAGE_SIZE = API.sysconf(SC_PAGESIZE);
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();

  private LibC() {}

  public static int open(String path, int flags, int mode) throws NativeIOException {
    int fd = API.open(path, flags | O_CLOEXEC, mode);
    if (fd < 0) {
      throw error("open " + path);
    }
    return fd;
  }

  public static void close(int fd) throws NativeIOException {
    if (API.close(fd) != 0) {
      throw error("close");
    }
  }

  /** Reads up to {@code count} bytes; returns the bytes read, fewer only at end of file. */
  public static long pread(int fd, long address, long count, long offset) throws NativeIOException {
    long done = 0;
    while (done < count) {
      long n = API.pread(fd, address + done, count - done, offset + done);
      if (n < 0) {
        if (RUNTIME.getLastError() == 4) { // EINTR
          continue;
        }
        throw error("pread");
      }
      if (n == 0) {
        break;
      }
      done += n;
    }
    return done;
  }

  /**
   * Writes the buffers of {@code iov} back to back from {@code offset}: one pwritev(2), and on
   * a short write the rest buffer by buffer. Writes all bytes or throws.
   */
  public static void pwritev(int fd, IoVec iov, long offset) throws NativeIOException {
    long n;
    do {
      n = API.pwritev(fd, iov.address(), iov.count(), offset);
    } while (n < 0 && RUNTIME.getLastError() == EINTR);
    if (n < 0) {
      throw error("pwritev");
    }
    for (int i = 0; i < iov.count(); i++) {
      long len = iov.length(i);
      long done = Math.min(n, len);
      if (done < len) {
        pwrite(fd, iov.base(i) + done, len - done, offset + done);
      }
      n -= done;
      offset += len;
    }
  }

  /** Writes all {@code count} bytes or throws. */
  public static void pwrite(int fd, long address, long count, long offset) throws NativeIOException {
    long done = 0;
    while (done < count) {
      long n = API.pwrite(fd, address + done, count - done, offset + done);
      if (n < 0) {
        if (RUNTIME.getLastError() == 4) {
          continue;
        }
        throw error("pwrite");
      }
      done += n;
    }
  }

  public static void fsync(int fd) throws NativeIOException {
    if (API.fsync(fd) != 0) {
      throw error("fsync");
    }
  }

  /** syncfs(2): everything pending on the filesystem holding {@code fd} made durable. */
  public static void syncfs(int fd) throws NativeIOException {
    if (API.syncfs(fd) != 0) {
      throw error("syncfs");
    }
  }

  public static void ftruncate(int fd, long length) throws NativeIOException {
    if (API.ftruncate(fd, length) != 0) {
      throw error("ftruncate");
    }
  }

  /** futimens: sets the mtime of the open file itself, leaving its atime as it is. */
  public static void futimesMtime(int fd, long mtimeNanos) throws NativeIOException {
    try (NativeBuffer t = new NativeBuffer(32)) {
      t.putLong(0, 0);
      t.putLong(8, (1L << 30) - 2); // UTIME_OMIT for atime
      t.putLong(16, Math.floorDiv(mtimeNanos, 1_000_000_000L));
      t.putLong(24, Math.floorMod(mtimeNanos, 1_000_000_000L));
      if (API.futimens(fd, t.address()) != 0) {
        throw error("futimens");
      }
    }
  }

  /** Allocates the range for real, so a later store into a mapping of it cannot fault on ENOSPC. */
  public static void fallocate(int fd, long offset, long length) throws NativeIOException {
    int rc = API.posix_fallocate(fd, offset, length);
    if (rc != 0) {
      throw new NativeIOException("posix_fallocate: " + API.strerror(rc), rc);
    }
  }

  public static final int FALLOC_FL_KEEP_SIZE = 0x01;
  public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
  public static final int FALLOC_FL_ZERO_RANGE = 0x10;

  /** Linux fallocate(2) with a mode (punch hole, zero range): 0 or -errno. */
  public static int fallocate(int fd, int mode, long offset, long length) {
    int rc;
    do {
      rc = rc(API.fallocate(fd, mode, offset, length));
    } while (rc == -EINTR);
    return rc;
  }

  public static long mmapShared(int fd, long length) throws NativeIOException {
    jnr.ffi.Pointer p = API.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == null || p.address() == -1) {
      throw error("mmap");
    }
    return p.address();
  }

  /** mmap of {@code length} bytes at {@code offset} of {@code fd}, shared, populated. */
  public static long mmapShared(int fd, long length, long offset) throws NativeIOException {
    jnr.ffi.Pointer p = API.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
        fd, offset);
    if (p == null || p.address() == -1) {
      throw error("mmap");
    }
    return p.address();
  }

  public static void munmap(long address, long length) throws NativeIOException {
    if (API.munmap(address, length) != 0) {
      throw error("munmap");
    }
  }

  public static final int MADV_RANDOM = 1;
  public static final int POSIX_FADV_DONTNEED = 4;

  /** madvise(2): 0 or -errno. */
  public static int madvise(long address, long length, int advice) {
    return rc(API.madvise(address, length, advice));
  }

  /** posix_fadvise(2) of the whole file: 0 or -errno. */
  public static int fadviseWholeFile(int fd, int advice) {
    return -API.posix_fadvise(fd, 0, 0, advice);
  }

  /** sysconf(_SC_PAGESIZE): what the kernel maps, writes back and aligns in. */
  public static long pageSize() {
    return PAGE_SIZE;
  }

  /** sync_file_range(2): 0 or -errno. */
  static int syncFileRange(int fd, long offset, long length, int flags) {
    int rc;
    do {
      rc = rc(API.sync_file_range(fd, offset, length, flags));
    } while (rc == -EINTR);
    return rc;
  }

  /** fdatasync(2): 0 or -errno. */
  static int fdatasync(int fd) {
    int rc;
    do {
      rc = rc(API.fdatasync(fd));
    } while (rc == -EINTR);
    return rc;
  }

  // ---- Metadata calls for the FUSE layer: 0 or -errno, never an exception (FUSE wants errno).

  public static final int AT_FDCWD = -100;
  public static final int AT_SYMLINK_NOFOLLOW = 0x100;
  public static final int AT_REMOVEDIR = 0x200;
  public static final int AT_EMPTY_PATH = 0x1000;

  /** read(2): bytes read, or -errno (EAGAIN on an empty non-blocking descriptor). */
  public static long read(int fd, long buf, long count) {
    long n = API.read(fd, buf, count);
    return n < 0 ? -RUNTIME.getLastError() : n;
  }

  /** write(2): bytes written, or -errno. */
  public static long write(int fd, long buf, long count) {
    long n = API.write(fd, buf, count);
    return n < 0 ? -RUNTIME.getLastError() : n;
  }

  /** pipe(2): {read end, write end}. */
  private static final int F_DUPFD_CLOEXEC = 1030;

  /** dup(2), close-on-exec: a second descriptor of the same open file. */
  public static int dup(int fd) throws NativeIOException {
    int rc = API.fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (rc < 0) {
      throw error("dup");
    }
    return rc;
  }

  /** dup2(2): makes {@code newfd} another descriptor of {@code oldfd}'s file (inherited). */
  public static void dup2(int oldfd, int newfd) throws NativeIOException {
    int rc;
    do {
      rc = API.dup2(oldfd, newfd);
    } while (rc < 0 && RUNTIME.getLastError() == EINTR);
    if (rc < 0) {
      throw error("dup2");
    }
  }

  public static int[] pipe() throws NativeIOException {
    int[] fds = new int[2];
    if (API.pipe(fds) < 0) {
      throw error("pipe");
    }
    return fds;
  }

  /** write(2) of the whole buffer in one call, as message-oriented descriptors need. */
  public static void writeMessage(int fd, long buf, long count, String what)
      throws NativeIOException {
    long n = API.write(fd, buf, count);
    if (n < 0) {
      throw error("write " + what);
    }
    if (n != count) {
      throw new NativeIOException("write " + what + ": " + n + " of " + count + " bytes",
          EIO);
    }
  }

  /** Sleeps until {@code fd} is readable or {@code timeoutMs} passed (poll(2), POLLIN). */
  public static void awaitReadable(int fd, int timeoutMs) {
    try (NativeBuffer pfd = new NativeBuffer(8)) {
      pfd.putLong(0, (long) fd | (1L << 32)); // struct pollfd {int fd; short events=POLLIN; ..}
      API.poll(pfd.address(), 1, timeoutMs);
    }
  }

  /** Whether {@code fd} is readable right now (poll with a zero timeout). */
  public static boolean readableNow(int fd) {
    NativeBuffer pfd = POLL_FD.get();
    pfd.putLong(0, (long) fd | (1L << 32)); // struct pollfd {int fd; short events=POLLIN; ..}
    return API.poll(pfd.address(), 1, 0) > 0;
  }

  private static final ThreadLocal<NativeBuffer> POLL_FD =
      ThreadLocal.withInitial(() -> new NativeBuffer(8));

  /** Sets O_NONBLOCK on {@code fd} (F_GETFL = 3, F_SETFL = 4). */
  public static void setNonBlocking(int fd) throws NativeIOException {
    int flags = API.fcntl(fd, 3, 0);
    if (flags < 0 || API.fcntl(fd, 4, flags | 04000) < 0) {
      throw error("fcntl O_NONBLOCK on fd " + fd);
    }
  }



  // ---- Relative to a directory descriptor ---------------------------------------------------

  /** openat(2) with O_CLOEXEC; the descriptor, or throws. */
  public static int openat(int dirfd, String path, int flags, int mode) throws NativeIOException {
    int fd = API.openat(dirfd, path, flags | O_CLOEXEC, mode);
    if (fd < 0) {
      throw error("open " + path);
    }
    return fd;
  }

  /** What wcfs reads of a struct stat. Times in nanoseconds since the epoch. */
  public record FileStatus(long dev, long ino, long nlink, int mode, int uid, int gid, long size,
      long atimeNanos, long mtimeNanos) {
    public int type() {
      return mode & 0170000;
    }
  }

  /** struct stat is 144 bytes on x86-64 and 128 on arm64; room for either. */
  public static final int STAT_SIZE = 256;

  /** fstatat(2), by default following no symlink at the end; throws ENOENT and the rest. */
  public static FileStatus fstatat(int dirfd, String path, int flags) throws NativeIOException {
    long buf = IO.allocateMemory(STAT_SIZE, false);
    try {
      if (API.fstatat(dirfd, path, buf, flags) != 0) {
        throw error("stat " + path);
      }
      return decodeStat(buf);
    } finally {
      IO.freeMemory(buf);
    }
  }

  public static FileStatus fstat(int fd) throws NativeIOException {
    long buf = IO.allocateMemory(STAT_SIZE, false);
    try {
      if (API.fstat(fd, buf) != 0) {
        throw error("fstat");
      }
      return decodeStat(buf);
    } finally {
      IO.freeMemory(buf);
    }
  }

  /**
   * The struct stat at {@code b}, as fstatat filled it: the kernel's layouts (asm/stat.h on
   * x86-64, asm-generic/stat.h on arm64).
   */
  public static FileStatus decodeStat(long b) {
    long nlink;
    int mode;
    int uid;
    int gid;
    if (ARM64) {
      mode = IO.getInt(b + 16);
      nlink = IO.getInt(b + 20) & 0xffffffffL;
      uid = IO.getInt(b + 24);
      gid = IO.getInt(b + 28);
    } else {
      nlink = IO.getLong(b + 16);
      mode = IO.getInt(b + 24);
      uid = IO.getInt(b + 28);
      gid = IO.getInt(b + 32);
    }
    return new FileStatus(IO.getLong(b), IO.getLong(b + 8), nlink, mode, uid, gid,
        IO.getLong(b + 48), IO.getLong(b + 72) * 1_000_000_000L + IO.getLong(b + 80),
        IO.getLong(b + 88) * 1_000_000_000L + IO.getLong(b + 96));
  }

  /** fstatat straight into a struct stat the caller owns (FUSE's getattr); 0 or -errno. */
  public static int fstatat(int dirfd, String path, long statBuf, int flags) {
    return rc(API.fstatat(dirfd, path, statBuf, flags));
  }

  /** fstat(2) into a struct stat at {@code statBuf}: 0 or -errno. */
  public static int fstat(int fd, long statBuf) {
    return rc(API.fstat(fd, statBuf));
  }

  public static int mkdirat(int dirfd, String path, int mode) {
    return rc(API.mkdirat(dirfd, path, mode));
  }

  public static int unlinkat(int dirfd, String path, int flags) {
    return rc(API.unlinkat(dirfd, path, flags));
  }

  public static int renameat(int olddirfd, String from, int newdirfd, String to) {
    return rc(API.renameat(olddirfd, from, newdirfd, to));
  }

  public static int linkat(int olddirfd, String from, int newdirfd, String to, int flags) {
    return rc(API.linkat(olddirfd, from, newdirfd, to, flags));
  }

  public static int symlinkat(String target, int newdirfd, String linkPath) {
    return rc(API.symlinkat(target, newdirfd, linkPath));
  }

  /** readlinkat into {@code buf}, NUL-terminated as FUSE expects; 0 or -errno. */
  public static int readlinkat(int dirfd, String path, long buf, long size) {
    long n = API.readlinkat(dirfd, path, buf, size - 1);
    if (n < 0) {
      return -RUNTIME.getLastError();
    }
    IO.putByte(buf + n, (byte) 0);
    return 0;
  }

  public static int mknodat(int dirfd, String path, int mode, long dev) {
    return rc(API.mknodat(dirfd, path, mode, dev));
  }

  public static int fchmodat(int dirfd, String path, int mode) {
    return rc(API.fchmodat(dirfd, path, mode, 0)); // Linux has no chmod of a symlink itself
  }

  public static int fchmod(int fd, int mode) {
    return rc(API.fchmod(fd, mode));
  }

  /** fchownat without following a final symlink, as lchown. */
  public static int fchownat(int dirfd, String path, int uid, int gid) {
    return rc(API.fchownat(dirfd, path, uid, gid, AT_SYMLINK_NOFOLLOW));
  }

  /** utimensat(dirfd, path, times[2], AT_SYMLINK_NOFOLLOW). */
  public static int utimensat(int dirfd, String path, long times) {
    return rc(API.utimensat(dirfd, path, times, AT_SYMLINK_NOFOLLOW));
  }

  public static int faccessat(int dirfd, String path, int mode) {
    return rc(API.faccessat(dirfd, path, mode, 0));
  }

  public static int fstatvfs(int fd, long buf) {
    return rc(API.fstatvfs(fd, buf));
  }

  /**
   * Calls {@code each} with the name of every entry of the directory {@code path} (relative to
   * {@code dirfd}), "." and ".." left out, until it returns false. openat + fdopendir rather
   * than opendir, so that the path may be as long as any other path below dirfd.
   */
  public static void listDirectory(int dirfd, String path, java.util.function.Predicate<String> each)
      throws NativeIOException {
    int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY, 0);
    long dir = API.fdopendir(fd);
    if (dir == 0) {
      NativeIOException e = error("fdopendir " + path);
      API.close(fd);
      throw e;
    }
    try {
      while (true) {
        RUNTIME.setLastError(0); // readdir tells its end from an error only by errno
        long ent = API.readdir(dir);
        if (ent == 0) {
          if (RUNTIME.getLastError() != 0) {
            throw error("readdir " + path);
          }
          return;
        }
        String name = direntName(ent);
        if (!name.equals(".") && !name.equals("..") && !each.test(name)) {
          return;
        }
      }
    } finally {
      API.closedir(dir); // closes fd too
    }
  }

  /** struct dirent: d_ino, d_off (8 bytes each), d_reclen (2), d_type (1), then d_name. */
  private static String direntName(long ent) {
    long name = ent + 19;
    int len = 0;
    while (IO.getByte(name + len) != 0) {
      len++;
    }
    byte[] b = new byte[len];
    IO.getByteArray(name, b, 0, len);
    return new String(b, java.nio.charset.StandardCharsets.UTF_8);
  }

  private static int rc(int result) {
    return result == 0 ? 0 : -RUNTIME.getLastError();
  }

  /** Throws for a -errno result of the calls above. */
  public static void check(int result, String what) throws NativeIOException {
    if (result < 0) {
      throw new NativeIOException(what + ": " + API.strerror(-result), -result);
    }
  }

  public static String strerror(int errno) {
    return API.strerror(errno);
  }

  public static int geteuid() {
    return API.geteuid();
  }

  private static NativeIOException error(String call) {
    int errno = RUNTIME.getLastError();
    return new NativeIOException(call + ": " + API.strerror(errno), errno);
  }
}
