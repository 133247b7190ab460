package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;

/**
 * {@link BackingStore} over a real directory: libc positional I/O; every path is reached
 * relative to a descriptor of the root (the *at calls), so that a path may be as long as the
 * kernel allows below the root, whatever the length of the root's own path.
 */
public final class DirectoryBackingStore implements BackingStore {
  private static final int EINVAL = 22;
  private static final int ENOENT = 2;
  private static final int EACCES = 13;
  private final Path root;
  /** O_PATH descriptor of the root, for the process's lifetime: every path is relative to it. */
  private final int rootFd;
  /** Runs before every call that may wait for the disk (the FUSE loop hands on its leader). */
  private final Runnable beforeIo;

  public DirectoryBackingStore(Path root) throws IOException {
    this(root, () -> { });
  }

  public DirectoryBackingStore(Path root, Runnable beforeIo) throws IOException {
    this.root = root.toRealPath();
    this.rootFd = LibC.open(this.root.toString(), LibC.O_PATH | LibC.O_DIRECTORY, 0);
    this.beforeIo = beforeIo;
  }

  public Path root() {
    return root;
  }

  /** The root's descriptor: the FUSE layer reaches names and attributes through it too. */
  public int rootFd() {
    return rootFd;
  }

  /** A path relative to the root as the *at calls take it: "" (the root itself) is ".". */
  public static String atPath(String path) {
    return path.isEmpty() ? "." : path;
  }

  @Override
  public Stat stat(String path) throws IOException {
    beforeIo.run();
    LibC.FileStatus st;
    try {
      st = LibC.fstatat(rootFd, atPath(path), LibC.AT_SYMLINK_NOFOLLOW);
    } catch (NativeIOException e) {
      if (e.errno() == ENOENT) {
        return null;
      }
      throw e;
    }
    return new Stat(st.ino(), st.size(), st.mtimeNanos(), (int) st.nlink(),
        st.type() == 0100000, st.type() == 0040000);
  }

  @Override
  public BackingFile open(String path) throws IOException {
    beforeIo.run();
    int fd;
    try {
      fd = LibC.openat(rootFd, atPath(path), LibC.O_RDWR, 0);
    } catch (NativeIOException e) {
      if (e.errno() == ENOENT) { // callers tell a vanished file from a failing disk
        throw new NoSuchFileException(path);
      }
      if (e.errno() != EACCES) { // a read-only file opened by a non-root daemon
        throw e;
      }
      fd = LibC.openat(rootFd, atPath(path), LibC.O_RDONLY, 0);
    }
    // The file's own name through this process's descriptor table: works whatever the length
    // of the path, and still names this file after a rename or an unlink.
    return new FdFile(fd, Path.of("/proc/self/fd/" + fd), beforeIo);
  }

  @Override
  public void unlink(String path) throws IOException {
    beforeIo.run();
    LibC.check(LibC.unlinkat(rootFd, atPath(path), 0), "unlink " + path);
  }

  @Override
  public void rename(String from, String to) throws IOException {
    beforeIo.run();
    LibC.check(LibC.renameat(rootFd, atPath(from), rootFd, atPath(to)),
        "rename " + from + " to " + to);
  }

  @Override
  public CacheLayout.BackingIdentity identity() throws IOException {
    Stat st = stat("");
    if (st == null || !st.directory()) {
      throw new AccessDeniedException(root.toString(), null, "not a directory");
    }
    return new CacheLayout.BackingIdentity(st.ino(), root.toString());
  }

  private static final class FdFile implements BackingFile {
    /** O_DIRECT wants position, length and memory aligned to the device's logical block. */
    private static final long DIRECT_ALIGN = 4096;
    private final int fd;
    private final Path path;
    private final Runnable beforeIo;
    /** A second descriptor with O_DIRECT for writeback; -2 until tried, -1 if unsupported. */
    private int directFd = -2;

    FdFile(int fd, Path path, Runnable beforeIo) {
      this.beforeIo = beforeIo;
      this.fd = fd;
      this.path = path;
    }

    @Override
    public long read(long position, long dstAddress, long length) throws IOException {
      beforeIo.run();
      return LibC.pread(fd, dstAddress, length, position);
    }

    @Override
    public void write(long position, long srcAddress, long length) throws IOException {
      beforeIo.run();
      LibC.pwrite(fd, srcAddress, length, position);
    }

    @Override
    public void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
      beforeIo.run();
      if (direct && (position & (DIRECT_ALIGN - 1)) == 0 && data.aligned(DIRECT_ALIGN)
          && directFd() >= 0) {
        try {
          LibC.pwritev(directFd, data, position);
          return;
        } catch (NativeIOException e) {
          if (e.errno() != EINVAL) {
            throw e;
          }
          closeDirect(); // this filesystem refuses the alignment after all: buffered from now
        }
      }
      LibC.pwritev(fd, data, position);
    }

    /** Reopens this very file (even if renamed or unlinked since) through /proc/self/fd. */
    private synchronized int directFd() {
      if (directFd == -2) {
        try {
          directFd = LibC.open("/proc/self/fd/" + fd, LibC.O_WRONLY | LibC.O_DIRECT
              | LibC.O_CLOEXEC, 0);
        } catch (NativeIOException e) {
          directFd = -1; // EINVAL: no O_DIRECT here (older tmpfs, some FUSE filesystems)
        }
      }
      return directFd;
    }

    private synchronized void closeDirect() throws IOException {
      if (directFd >= 0) {
        LibC.close(directFd);
      }
      directFd = -1;
    }

    @Override
    public long size() throws IOException {
      return Files.size(path);
    }

    @Override
    public void truncate(long size) throws IOException {
      beforeIo.run();
      LibC.ftruncate(fd, size);
    }

    @Override
    public void sync() throws IOException {
      beforeIo.run();
      LibC.fsync(fd);
    }

    @Override
    public void setMtime(long mtimeNanos) throws IOException {
      try {
        Files.setLastModifiedTime(path, FileTime.from(Instant.ofEpochSecond(
            Math.floorDiv(mtimeNanos, 1_000_000_000L), Math.floorMod(mtimeNanos, 1_000_000_000L))));
      } catch (NoSuchFileException e) {
        // unlinked while open: no name left to carry an mtime
      }
    }

    @Override
    public void close() throws IOException {
      closeDirect();
      LibC.close(fd);
    }
  }
}
