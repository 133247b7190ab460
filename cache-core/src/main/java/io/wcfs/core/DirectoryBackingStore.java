package io.wcfs.core;

import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeBuffer;
import io.wcfs.nativ.NativeIOException;
import io.wcfs.nativ.Xattr;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.function.Predicate;

/**
 * {@link BackingStore} over a real directory: libc positional I/O; every path is reached
 * relative to a descriptor of the root (the *at calls), so that a path may be as long as the
 * kernel allows below the root, whatever the length of the root's own path.
 */
public final class DirectoryBackingStore implements BackingStore {
  private static final int EPERM = 1;
  private static final int ENOENT = 2;
  private static final int EACCES = 13;
  private static final int EEXIST = 17;
  private static final int EINVAL = 22;
  private static final int EROFS = 30;
  private static final int ENOSYS = 38;
  private static final int ENXIO = 6;
  private static final int ELOOP = 40;
  private static final int O_NONBLOCK = 04000;
  private final Path root;
  /** O_PATH descriptor of the root, for the process's lifetime: every path is relative to it. */
  private final int rootFd;
  /** Guarded by this. */
  private boolean closed;
  /** Runs before every call that may wait for the disk (the FUSE loop hands on its leader). */
  private final Runnable beforeIo;
  /**
   * Runs before a read of a backing file instead: a read waits for the disk only when the
   * backing file's pages are not in the page cache, and then ~100 µs, so the FUSE loop hands on
   * its leader only if another request waits (a lone reader then pays no thread switch).
   */
  private final Runnable beforeRead;
  /**
   * Asked before every writeback batch and every change this store makes to the backing
   * directory (a claim's lease on a shared filesystem); allows everything until set.
   */
  private volatile WriteGuard writeGuard = () -> { };

  /** Asks the write guard (see {@link #writeGuard}); throws, saying why, if it refuses. */
  void checkWriteGuard() throws IOException {
    writeGuard.check();
  }

  /** Runs the hook before a read of a backing file (see {@link #beforeRead}). */
  void beforeRead() {
    beforeRead.run();
  }

  /** Whether this cache may change the backing directory now; throws, saying why, if not. */
  @FunctionalInterface
  public interface WriteGuard {
    void check() throws IOException;
  }

  public DirectoryBackingStore(Path root) throws IOException {
    this(root, () -> { });
  }

  public DirectoryBackingStore(Path root, Runnable beforeIo) throws IOException {
    this(root, beforeIo, beforeIo);
  }

  public DirectoryBackingStore(Path root, Runnable beforeIo, Runnable beforeRead)
      throws IOException {
    this.root = root.toRealPath();
    this.rootFd = LibC.open(this.root.toString(), LibC.O_PATH | LibC.O_DIRECTORY, 0);
    this.beforeIo = beforeIo;
    this.beforeRead = beforeRead;
  }

  public Path root() {
    return root;
  }

  /** Installs the check made before every writeback batch and every change of the store. */
  public void setWriteGuard(WriteGuard guard) {
    this.writeGuard = guard;
  }

  @Override
  public void checkMayWriteBack() throws IOException {
    writeGuard.check();
  }

  /**
   * Closes the root's descriptor (which keeps a mount under it busy). The daemon never does:
   * the store lives as long as the process; tests that unmount the root after use do.
   */
  public synchronized void close() throws IOException {
    if (!closed) {
      closed = true;
      LibC.close(rootFd);
    }
  }

  /** A path relative to the root as the *at calls take it: "" (the root itself) is ".". */
  public static String atPath(String path) {
    return path.isEmpty() ? "." : path;
  }

  /** For messages only: the path as a person would look it up. */
  private Path display(String path) {
    return path.isEmpty() ? root : root.resolve(path);
  }

  /**
   * lstat. Like {@link #statInto}, a lookup the kernel mostly answers from its inode cache:
   * the leader is handed on only when another request waits (a namespace operation stats its
   * name and parent, and a hand-off each time cost more than the operation), and a missing
   * name is a null, not an exception (most creates look up a name that is not there).
   */
  @Override
  public Stat stat(String path) throws IOException {
    beforeRead.run();
    try (NativeBuffer buf = new NativeBuffer(LibC.STAT_SIZE)) {
      int rc = LibC.fstatat(rootFd, atPath(path), buf.address(), LibC.AT_SYMLINK_NOFOLLOW);
      if (rc == -ENOENT) {
        return null;
      }
      LibC.check(rc, "stat " + display(path));
      LibC.FileStatus st = LibC.decodeStat(buf.address());
      return new Stat(st.dev(), st.ino(), st.size(), st.mtimeNanos(), (int) st.nlink(),
          st.type() == 0100000, st.type() == 0040000);
    }
  }

  /**
   * Opens for reading and writing; a file that cannot be written (mode, immutable flag,
   * read-only mount) is opened for reading only, so that reads keep working, and its first
   * write fails with {@link #notWritable}, which names the file, the cause and the fix.
   */
  @Override
  public BackingFile open(String path) throws IOException {
    beforeIo.run();
    try {
      int fd = LibC.openat(rootFd, atPath(path), LibC.O_RDWR | LibC.O_CLOEXEC, 0);
      return new DirectoryBackingFile(this, fd, fd, display(path), beforeIo);
    } catch (NativeIOException e) {
      if (e.errno() == ENOENT) { // callers tell a vanished file from a failing disk
        throw new NoSuchFileException(display(path).toString());
      }
      if (!isReadOnlyError(e.errno())) {
        throw e;
      }
    }
    return new DirectoryBackingFile(this, LibC.openat(rootFd, atPath(path), LibC.O_RDONLY | LibC.O_CLOEXEC, 0),
        -1, display(path), beforeIo);
  }

  @Override
  public void createFile(String path) throws IOException {
    writeGuard.check();
    beforeIo.run();
    // Parents relative to the root's descriptor too, never by the root's path: a wcfs mounted
    // in place covers that path with itself.
    int slash = -1;
    while ((slash = path.indexOf('/', slash + 1)) > 0) {
      int rc = LibC.mkdirat(rootFd, path.substring(0, slash), 0700);
      if (rc < 0 && rc != -EEXIST) {
        LibC.check(rc, "mkdir " + display(path.substring(0, slash)));
      }
    }
    LibC.close(LibC.openat(rootFd, atPath(path), LibC.O_WRONLY | LibC.O_CREAT | LibC.O_CLOEXEC,
        0600));
  }

  @Override
  public BackingFile create(String path, int mode, int uid, int gid) throws IOException {
    writeGuard.check();
    beforeIo.run();
    int fd;
    try {
      fd = LibC.openat(rootFd, atPath(path), LibC.O_RDWR | LibC.O_CREAT | LibC.O_EXCL
          | LibC.O_CLOEXEC, mode & 07777);
    } catch (NativeIOException e) {
      if (e.errno() == EEXIST) {
        throw new java.nio.file.FileAlreadyExistsException(display(path).toString());
      }
      throw e;
    }
    DirectoryBackingFile file = new DirectoryBackingFile(this, fd, fd, display(path), beforeIo);
    try {
      LibC.check(LibC.fchownat(rootFd, atPath(path), uid, gid), "chown " + display(path));
      LibC.check(LibC.fchmod(fd, mode & 07777), "chmod " + display(path)); // no umask
    } catch (IOException e) {
      file.close();
      throw e;
    }
    return file;
  }

  @Override
  public void syncDirectory(String path) throws IOException {
    beforeIo.run();
    int fd = LibC.openat(rootFd, atPath(path), LibC.O_RDONLY | LibC.O_DIRECTORY
        | LibC.O_CLOEXEC, 0);
    try {
      LibC.fsync(fd);
    } catch (NativeIOException e) {
      // Network filesystems (sshfs) may not offer a directory fsync; their namespace changes
      // are made on the server by the call itself, so there is nothing more to wait for.
      if (e.errno() != ENOSYS && e.errno() != EINVAL) {
        throw e;
      }
    } finally {
      LibC.close(fd);
    }
  }

  /**
   * syncfs(2) through a descriptor of the root opened for it (the root's own is O_PATH, which
   * syncfs refuses). A filesystem without it (EINVAL, ENOSYS) has nothing pending to wait for.
   */
  @Override
  public void syncAll() throws IOException {
    beforeIo.run();
    int fd = LibC.openat(rootFd, ".", LibC.O_RDONLY | LibC.O_DIRECTORY | LibC.O_CLOEXEC, 0);
    try {
      LibC.syncfs(fd);
    } catch (NativeIOException e) {
      if (e.errno() != ENOSYS && e.errno() != EINVAL) {
        throw e;
      }
    } finally {
      LibC.close(fd);
    }
  }

  /** Errors of an open for writing that leave the file readable. */
  static boolean isReadOnlyError(int errno) {
    return errno == EACCES || errno == EPERM || errno == EROFS;
  }

  /**
   * Why {@code path} cannot be written and what to do about it: the writeback error that
   * status shows and the log line (and a write-through write's errno), instead of the EBADF a
   * write to a read-only descriptor gets.
   */
  static NativeIOException notWritable(Path path, int errno) {
    String cause;
    String fix;
    switch (errno) {
      case EROFS:
        cause = "it is on a read-only filesystem (a read-only mount or bind mount)";
        fix = "remount it read-write";
        break;
      case EPERM:
        cause = "it is immutable or append-only (chattr +i or +a)";
        fix = "clear the flag with chattr -i -a";
        break;
      default:
        cause = "permission denied: its mode or owner does not let wcfs (uid " + LibC.geteuid()
            + ") write it";
        fix = "make it writable for wcfs (chmod u+w, or chown it to wcfs's user)";
    }
    return new NativeIOException("cannot write to backing file " + path + ": " + cause + "; "
        + fix + ". Cached data for it stays in the cache and writeback keeps retrying", errno);
  }

  @Override
  public void unlink(String path) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.unlinkat(rootFd, atPath(path), 0), "unlink " + path);
  }

  @Override
  public void rename(String from, String to) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.renameat(rootFd, atPath(from), rootFd, atPath(to)),
        "rename " + from + " to " + to);
  }

  // Names and attributes the journal does not take. Each call reaches the name relative to the
  // root's descriptor, so a path near PATH_MAX below the root fails as the kernel says
  // (ENAMETOOLONG only when the relative path itself is too long), and throws the call's own
  // errno: the FUSE layer answers it as is.

  @Override
  public void mkdir(String path, int mode) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.mkdirat(rootFd, atPath(path), mode), "mkdir " + path);
  }

  @Override
  public void rmdir(String path) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.unlinkat(rootFd, atPath(path), LibC.AT_REMOVEDIR), "rmdir " + path);
  }

  @Override
  public void link(String from, String to) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.linkat(rootFd, atPath(from), rootFd, atPath(to), 0),
        "link " + from + " to " + to);
  }

  @Override
  public void symlink(String target, String path) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.symlinkat(target, rootFd, atPath(path)), "symlink " + path);
  }

  @Override
  public void mknod(String path, int mode, long rdev) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.mknodat(rootFd, atPath(path), mode, rdev), "mknod " + path);
  }

  @Override
  public void chmod(String path, int mode) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.fchmodat(rootFd, atPath(path), mode), "chmod " + path);
  }

  @Override
  public void chown(String path, int uid, int gid) throws IOException {
    writeGuard.check();
    beforeIo.run();
    LibC.check(LibC.fchownat(rootFd, atPath(path), uid, gid), "chown " + path);
  }

  @Override
  public void setTimes(String path, TimeSpec atime, TimeSpec mtime) throws IOException {
    writeGuard.check();
    beforeIo.run();
    try (NativeBuffer times = new NativeBuffer(32)) { // struct timespec[2]
      times.putLong(0, atime.seconds());
      times.putLong(8, atime.nanos());
      times.putLong(16, mtime.seconds());
      times.putLong(24, mtime.nanos());
      LibC.check(LibC.utimensat(rootFd, atPath(path), times.address()), "utimensat " + path);
    }
  }

  @Override
  public void list(String dir, Predicate<String> each) throws IOException {
    beforeIo.run();
    LibC.listDirectory(rootFd, atPath(dir), each);
  }

  @Override
  public byte[] readlink(String path) throws IOException {
    beforeIo.run();
    // Linux keeps a target below PATH_MAX; the loop only guards against a filesystem that
    // does not, since a target that fills the buffer may have been cut.
    for (int room = 4096; ; room *= 2) {
      try (NativeBuffer buf = new NativeBuffer(room + 1)) {
        LibC.check(LibC.readlinkat(rootFd, atPath(path), buf.address(), room + 1),
            "readlink " + path);
        byte[] b = new byte[room];
        buf.get(0, b, 0, room);
        int n = 0;
        while (n < room && b[n] != 0) { // NUL-terminated; a target holds no NUL
          n++;
        }
        if (n < room) {
          return java.util.Arrays.copyOf(b, n);
        }
      }
    }
  }

  @Override
  public void access(String path, int mask) throws IOException {
    beforeIo.run();
    LibC.check(LibC.faccessat(rootFd, atPath(path), mask), "access " + path);
  }

  /** fstatvfs of the root's O_PATH descriptor (allowed since Linux 3.12); glibc's layout. */
  @Override
  public FsStats statfs() throws IOException {
    beforeIo.run();
    try (NativeBuffer buf = new NativeBuffer(112)) { // struct statvfs on 64-bit Linux
      LibC.check(LibC.fstatvfs(rootFd, buf.address()), "statvfs " + root);
      return new FsStats(buf.getLong(0), buf.getLong(8), buf.getLong(16), buf.getLong(24),
          buf.getLong(32), buf.getLong(40), buf.getLong(48), buf.getLong(56), buf.getLong(64),
          buf.getLong(72), buf.getLong(80));
    }
  }

  @Override
  public int statInto(String path, long statBuf) {
    return LibC.fstatat(rootFd, atPath(path), statBuf, LibC.AT_SYMLINK_NOFOLLOW);
  }

  // Extended attributes: through an O_PATH descriptor of the node (see Xattr#getxattrAt), so
  // that a symlink gets its own and a path near PATH_MAX below the root works.

  @Override
  public long getXattr(String path, String name, long buf, long size) {
    return Xattr.getxattrAt(rootFd, atPath(path), name, buf, size);
  }

  @Override
  public long listXattrs(String path, long buf, long size) {
    beforeRead.run();
    return Xattr.listxattrAt(rootFd, atPath(path), buf, size);
  }

  @Override
  public int setXattr(String path, String name, long value, long size, int flags) {
    beforeIo.run();
    return Xattr.setxattrAt(rootFd, atPath(path), name, value, size, flags);
  }

  @Override
  public int removeXattr(String path, String name) {
    beforeIo.run();
    return Xattr.removexattrAt(rootFd, atPath(path), name);
  }

  /**
   * O_RDONLY | O_NOFOLLOW | O_NONBLOCK: ELOOP for a symlink, ENXIO or EACCES for a special file
   * (or one the daemon may not read) are the nodes that cannot be synced by themselves.
   */
  @Override
  public HeldNode holdToSync(String path) throws IOException {
    beforeRead.run();
    int fd;
    try {
      fd = LibC.openat(rootFd, atPath(path), LibC.O_RDONLY | LibC.O_NOFOLLOW | O_NONBLOCK, 0);
    } catch (NativeIOException e) {
      if (e.errno() == ELOOP || e.errno() == ENXIO || e.errno() == EACCES) {
        return null;
      }
      throw e;
    }
    return new HeldNode() {
      @Override
      public void sync() throws IOException {
        LibC.fsync(fd);
      }

      @Override
      public void close() throws IOException {
        LibC.close(fd);
      }
    };
  }

  @Override
  public CacheLayout.BackingIdentity identity() throws IOException {
    Stat st = stat("");
    if (st == null || !st.directory()) {
      throw new AccessDeniedException(root.toString(), null, "not a directory");
    }
    return new CacheLayout.BackingIdentity(st.ino(), root.toString());
  }
}
