package io.wcfs.fs;

import io.wcfs.core.CacheErrorException;
import io.wcfs.core.WriteCache;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAccumulator;
import jnr.ffi.Pointer;
import jnr.ffi.Struct;
import jnr.ffi.types.mode_t;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import ru.serce.jnrfuse.ErrorCodes;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.Statvfs;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The FUSE face of wcfs: file data goes through the {@link WriteCache}; names, modes, owners
 * and times live in the backing directory. Every callback returns 0 or -errno and never lets an
 * exception reach native code: unexpected ones are logged with the path and become EIO.
 *
 * <p>Extended attributes are left unimplemented: the kernel then remembers ENOSYS and stops
 * asking, instead of a getxattr("security.capability") before every write.
 */
final class WcfsFileSystem extends FuseStubFS {
  private static final Logger LOG = LoggerFactory.getLogger(WcfsFileSystem.class);
  private static final int O_ACCMODE = 3;
  private static final int O_CREAT = 0100;
  private static final int O_EXCL = 0200;
  private static final int O_DSYNC = 010000;
  private static final int O_SYNC = 04010000;
  private static final long UTIME_NOW = (1L << 30) - 1;
  private static final long UTIME_OMIT = (1L << 30) - 2;

  private final WriteCache cache;
  private final Path root;
  private final int ownUid = LibC.geteuid();
  private final Map<Long, Handle> handles = new ConcurrentHashMap<>();
  private final AtomicLong nextHandle = new AtomicLong(1);
  /** The largest write request the kernel sent: shows what max_write it agreed to. */
  private final LongAccumulator largestWrite = new LongAccumulator(Math::max, 0);

  /** One open file: the engine's handle and whether writes must commit before returning. */
  private record Handle(WriteCache.OpenFile file, boolean sync) {}

  long largestWrite() {
    return largestWrite.get();
  }

  WcfsFileSystem(WriteCache cache, Path backingRoot) {
    this.cache = cache;
    this.root = backingRoot;
  }

  /** The fuse_operations table jnr-fuse filled in, for {@link FuseLoop}. */
  Struct operations() {
    return fuseOperations;
  }

  @Override
  protected String getFSName() {
    return "wcfs";
  }

  /** "/a/b" -> "a/b", relative to the backing root. */
  private static String rel(String path) {
    return path.length() <= 1 ? "" : path.substring(1);
  }

  private String abs(String path) {
    return path.length() <= 1 ? root.toString() : root + path;
  }

  /** Runs an operation, mapping exceptions to -errno; nothing escapes into native code. */
  private int guard(String op, String path, IoCall call) {
    switch (op) {
      // The engine's own calls to the backing disk hand off (Daemon's backing store does).
      case "read", "write", "fsync", "getattr", "release", "open" -> { }
      default -> FuseLoop.handOff(); // namespace operations here go to the backing directory
    }
    try {
      return call.run();
    } catch (NativeIOException e) {
      return -e.errno();
    } catch (NoSuchFileException e) {
      return -ErrorCodes.ENOENT();
    } catch (FileAlreadyExistsException e) {
      return -ErrorCodes.EEXIST();
    } catch (DirectoryNotEmptyException e) {
      return -ErrorCodes.ENOTEMPTY();
    } catch (NotDirectoryException e) {
      return -ErrorCodes.ENOTDIR();
    } catch (AccessDeniedException e) {
      return -ErrorCodes.EACCES();
    } catch (CacheErrorException e) {
      LOG.debug("{} {}: {}", op, path, e.getMessage());
      return -ErrorCodes.EIO();
    } catch (IOException e) {
      LOG.warn("{} {} failed: {}", op, path, e.toString());
      return -ErrorCodes.EIO();
    } catch (RuntimeException | Error e) {
      LOG.error("{} {}: unexpected failure, answering EIO", op, path, e);
      return -ErrorCodes.EIO();
    }
  }

  /** After a namespace call of ours: the next commit fsyncs the changed directory. */
  private int namespaceChanged(String path, int rc) {
    if (rc == 0) {
      cache.namespaceChanged(rel(path));
    }
    return rc;
  }

  private interface IoCall {
    int run() throws IOException;
  }

  private static long address(Struct s) {
    return Struct.getMemory(s).address();
  }

  /** New files belong to the caller, not to the daemon (which may run as root). */
  private void giveToCaller(String absPath) {
    int uid = (int) getContext().uid.get();
    int gid = (int) getContext().gid.get();
    if (ownUid == 0 && (uid != 0 || gid != 0)) {
      LibC.lchown(absPath, uid, gid);
    }
  }

  // ---- attributes ---------------------------------------------------------------------------

  @Override
  public int getattr(String path, FileStat stat) {
    return guard("getattr", path, () -> {
      int rc = LibC.lstat(abs(path), address(stat));
      if (rc == 0) {
        overlayCachedAttributes(stat);
      }
      return rc;
    });
  }

  @Override
  public int fgetattr(String path, FileStat stat, FuseFileInfo fi) {
    return getattr(path, stat);
  }

  /** The logical size and mtime of a file with cached writes, not the stale backing values. */
  private void overlayCachedAttributes(FileStat stat) {
    if ((stat.st_mode.intValue() & FileStat.S_IFMT) != FileStat.S_IFREG) {
      return;
    }
    long dev = stat.st_dev.longValue();
    long ino = stat.st_ino.longValue();
    long size = cache.cachedSize(dev, ino);
    if (size >= 0) {
      stat.st_size.set(size);
      stat.st_blocks.set((size + 511) / 512);
      long mtime = cache.cachedMtime(dev, ino);
      stat.st_mtim.tv_sec.set(Math.floorDiv(mtime, 1_000_000_000L));
      stat.st_mtim.tv_nsec.set(Math.floorMod(mtime, 1_000_000_000L));
    }
  }

  @Override
  public int chmod(String path, @mode_t long mode) {
    return guard("chmod", path, () -> LibC.chmod(abs(path), (int) mode));
  }

  @Override
  public int chown(String path, long uid, long gid) {
    return guard("chown", path, () -> LibC.lchown(abs(path), (int) uid, (int) gid));
  }

  @Override
  public int utimens(String path, Timespec[] timespec) {
    return guard("utimens", path, () -> {
      int rc = LibC.utimens(abs(path), address(timespec[0]));
      if (rc != 0) {
        return rc;
      }
      long nsec = timespec[1].tv_nsec.longValue();
      if (nsec != UTIME_OMIT) {
        long mtime;
        if (nsec == UTIME_NOW) {
          Instant now = Instant.now();
          mtime = now.getEpochSecond() * 1_000_000_000L + now.getNano();
        } else {
          mtime = timespec[1].tv_sec.get() * 1_000_000_000L + nsec;
        }
        cache.setMtime(rel(path), mtime); // so writeback does not undo it
      }
      return 0;
    });
  }

  @Override
  public int access(String path, int mask) {
    return guard("access", path, () -> LibC.access(abs(path), mask));
  }

  @Override
  public int statfs(String path, Statvfs stbuf) {
    return guard("statfs", path, () -> LibC.statvfs(root.toString(), address(stbuf)));
  }

  // ---- namespace ----------------------------------------------------------------------------

  @Override
  public int readdir(String path, Pointer buf, FuseFillDir filter, @off_t long offset,
      FuseFileInfo fi) {
    return guard("readdir", path, () -> {
      filter.apply(buf, ".", null, 0);
      filter.apply(buf, "..", null, 0);
      try (DirectoryStream<Path> dir = Files.newDirectoryStream(Path.of(abs(path)))) {
        for (Path p : dir) {
          if (filter.apply(buf, p.getFileName().toString(), null, 0) != 0) {
            break;
          }
        }
      }
      return 0;
    });
  }

  @Override
  public int mkdir(String path, @mode_t long mode) {
    return guard("mkdir", path, () -> {
      int rc = LibC.mkdir(abs(path), (int) mode);
      if (rc == 0) {
        giveToCaller(abs(path));
        cache.namespaceChanged(rel(path));
      }
      return rc;
    });
  }

  @Override
  public int rmdir(String path) {
    return guard("rmdir", path, () -> namespaceChanged(path, LibC.rmdir(abs(path))));
  }

  @Override
  public int unlink(String path) {
    return guard("unlink", path, () -> {
      cache.unlink(rel(path));
      return 0;
    });
  }

  @Override
  public int rename(String oldpath, String newpath) {
    return guard("rename", oldpath, () -> {
      cache.rename(rel(oldpath), rel(newpath));
      return 0;
    });
  }

  @Override
  public int link(String oldpath, String newpath) {
    return guard("link", oldpath, () ->
        namespaceChanged(newpath, LibC.link(abs(oldpath), abs(newpath))));
  }

  @Override
  public int symlink(String oldpath, String newpath) {
    return guard("symlink", newpath, () -> {
      int rc = LibC.symlink(oldpath, abs(newpath));
      if (rc == 0) {
        giveToCaller(abs(newpath));
        cache.namespaceChanged(rel(newpath));
      }
      return rc;
    });
  }

  @Override
  public int readlink(String path, Pointer buf, @size_t long size) {
    return guard("readlink", path, () -> LibC.readlink(abs(path), buf.address(), size));
  }

  @Override
  public int mknod(String path, @mode_t long mode, long rdev) {
    return guard("mknod", path, () -> {
      int rc = LibC.mknod(abs(path), (int) mode, rdev);
      if (rc == 0) {
        giveToCaller(abs(path));
        cache.namespaceChanged(rel(path));
      }
      return rc;
    });
  }

  // ---- files --------------------------------------------------------------------------------

  @Override
  public int create(String path, @mode_t long mode, FuseFileInfo fi) {
    return guard("create", path, () -> {
      int flags = fi.flags.get();
      int fd = LibC.open(abs(path), O_CREAT | (flags & O_EXCL) | LibC.O_WRONLY, (int) mode);
      LibC.close(fd);
      giveToCaller(abs(path));
      cache.namespaceChanged(rel(path)); // the next fsync makes the new name durable too
      return openHandle(path, fi);
    });
  }

  @Override
  public int open(String path, FuseFileInfo fi) {
    return guard("open", path, () -> openHandle(path, fi));
  }

  private int openHandle(String path, FuseFileInfo fi) throws IOException {
    int flags = fi.flags.get();
    WriteCache.OpenFile file = cache.open(rel(path));
    boolean sync = (flags & O_ACCMODE) != LibC.O_RDONLY && ((flags & O_DSYNC) != 0
        || (flags & O_SYNC) == O_SYNC);
    long id = nextHandle.getAndIncrement();
    handles.put(id, new Handle(file, sync));
    fi.fh.set(id);
    return 0;
  }

  private Handle handle(FuseFileInfo fi) throws IOException {
    Handle h = handles.get(fi.fh.get());
    if (h == null) {
      throw new NativeIOException("stale file handle", ErrorCodes.EBADF());
    }
    return h;
  }

  @Override
  public int read(String path, Pointer buf, @size_t long size, @off_t long offset,
      FuseFileInfo fi) {
    return guard("read", path, () ->
        cache.read(handle(fi).file(), offset, buf.address(), (int) size));
  }

  @Override
  public int write(String path, Pointer buf, @size_t long size, @off_t long offset,
      FuseFileInfo fi) {
    return guard("write", path, () -> {
      Handle h = handle(fi);
      largestWrite.accumulate(size);
      cache.write(h.file(), offset, buf.address(), size);
      if (h.sync()) {
        cache.commit(); // O_SYNC / O_DSYNC: durable before the write returns
      }
      return (int) size;
    });
  }

  @Override
  public int flush(String path, FuseFileInfo fi) {
    return 0; // close() is not fsync(); data is in the cache already
  }

  @Override
  public int release(String path, FuseFileInfo fi) {
    return guard("release", path, () -> {
      Handle h = handles.remove(fi.fh.get());
      if (h != null) {
        cache.close(h.file());
      }
      return 0;
    });
  }

  @Override
  public int fsync(String path, int isdatasync, FuseFileInfo fi) {
    return guard("fsync", path, () -> {
      cache.commit();
      return 0;
    });
  }

  @Override
  public int fsyncdir(String path, FuseFileInfo fi) {
    return guard("fsyncdir", path, () -> {
      int fd = LibC.open(abs(path), LibC.O_RDONLY, 0);
      try {
        LibC.fsync(fd); // directory entries live in the backing directory
      } finally {
        LibC.close(fd);
      }
      return 0;
    });
  }

  @Override
  public int truncate(String path, @off_t long size) {
    return guard("truncate", path, () -> {
      cache.truncate(rel(path), size);
      return 0;
    });
  }

  @Override
  public int ftruncate(String path, @off_t long size, FuseFileInfo fi) {
    return guard("ftruncate", path, () -> {
      cache.truncate(handle(fi).file(), size);
      return 0;
    });
  }

  @Override
  public int fallocate(String path, int mode, @off_t long off, @off_t long length,
      FuseFileInfo fi) {
    return guard("fallocate", path, () -> {
      if (mode != 0) {
        return -ErrorCodes.EOPNOTSUPP();
      }
      WriteCache.OpenFile f = handle(fi).file();
      if (off + length > cache.size(f)) {
        cache.truncate(f, off + length); // the new range reads as zeros, as fallocate's does
      }
      return 0;
    });
  }
}
