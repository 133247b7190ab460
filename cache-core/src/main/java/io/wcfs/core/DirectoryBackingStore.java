package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.Map;

/** {@link BackingStore} over a real directory: libc positional I/O, NIO for metadata. */
public final class DirectoryBackingStore implements BackingStore {
  private static final int EINVAL = 22;
  private static final int ENOSYS = 38;
  private final Path root;
  /** Runs before every call that may wait for the disk (the FUSE loop hands on its leader). */
  private final Runnable beforeIo;

  public DirectoryBackingStore(Path root) throws IOException {
    this(root, () -> { });
  }

  public DirectoryBackingStore(Path root, Runnable beforeIo) throws IOException {
    this.root = root.toRealPath();
    this.beforeIo = beforeIo;
  }

  public Path root() {
    return root;
  }

  public Path resolve(String path) {
    return path.isEmpty() ? root : root.resolve(path);
  }

  @Override
  public Stat stat(String path) throws IOException {
    beforeIo.run();
    Map<String, Object> a;
    try {
      a = Files.readAttributes(resolve(path), "unix:dev,ino,size,lastModifiedTime,nlink,mode",
          LinkOption.NOFOLLOW_LINKS);
    } catch (NoSuchFileException e) {
      return null;
    }
    int mode = (Integer) a.get("mode");
    FileTime mtime = (FileTime) a.get("lastModifiedTime");
    Instant t = mtime.toInstant();
    return new Stat((Long) a.get("dev"), (Long) a.get("ino"), (Long) a.get("size"),
        t.getEpochSecond() * 1_000_000_000L + t.getNano(), (Integer) a.get("nlink"),
        (mode & 0170000) == 0100000, (mode & 0170000) == 0040000);
  }

  @Override
  public BackingFile open(String path) throws IOException {
    beforeIo.run();
    String abs = resolve(path).toString();
    int fd;
    try {
      fd = LibC.open(abs, LibC.O_RDWR, 0);
    } catch (NativeIOException e) {
      if (e.errno() == 2) { // ENOENT: callers tell a vanished file from a failing disk
        throw new NoSuchFileException(abs);
      }
      if (e.errno() != 13) { // EACCES: a read-only file opened by a non-root daemon
        throw e;
      }
      fd = LibC.open(abs, LibC.O_RDONLY, 0);
    }
    return new FdFile(fd, beforeIo);
  }

  @Override
  public void createFile(String path) throws IOException {
    beforeIo.run();
    Path p = resolve(path);
    Files.createDirectories(p.getParent());
    LibC.close(LibC.open(p.toString(), LibC.O_WRONLY | LibC.O_CREAT | LibC.O_CLOEXEC, 0600));
  }

  @Override
  public void syncDirectory(String path) throws IOException {
    beforeIo.run();
    int fd = LibC.open(resolve(path).toString(), LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
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

  @Override
  public void unlink(String path) throws IOException {
    beforeIo.run();
    LibC.check(LibC.unlink(resolve(path).toString()), "unlink " + path);
  }

  @Override
  public void rename(String from, String to) throws IOException {
    beforeIo.run();
    LibC.check(LibC.rename(resolve(from).toString(), resolve(to).toString()),
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
    private final Runnable beforeIo;
    /** A second descriptor with O_DIRECT for writeback; -2 until tried, -1 if unsupported. */
    private int directFd = -2;

    /**
     * Everything below goes through the descriptor, never the path it was opened with: the
     * file may be renamed or unlinked while open, and a lookup by a stale path would find
     * nothing (or another file) and make writeback think the file was gone.
     */
    FdFile(int fd, Runnable beforeIo) {
      this.beforeIo = beforeIo;
      this.fd = fd;
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
      return LibC.fstat(fd).size();
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
      LibC.futimesMtime(fd, mtimeNanos);
    }

    @Override
    public void close() throws IOException {
      closeDirect();
      LibC.close(fd);
    }
  }
}
