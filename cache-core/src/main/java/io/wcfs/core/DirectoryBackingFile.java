package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.file.Path;

/**
 * A backing file of {@link DirectoryBackingStore}, open by descriptor: what writeback writes
 * through and reads of uncached data read from.
 */
final class DirectoryBackingFile implements BackingStore.BackingFile {
  private static final int EINVAL = 22;
  private static final int ENOSYS = 38;
  private static final int EOPNOTSUPP = 95;
  /** O_DIRECT wants position, length and memory aligned to the device's logical block. */
  private static final long DIRECT_ALIGN = 4096;
  /** Reads go here; opened read-only when the file could not be opened for writing. */
  private final int fd;
  /** The path the file was opened with: for messages only, it may name nothing by now. */
  private final Path path;
  private final Runnable beforeIo;
  /** Whose write guard is asked before every write and truncate. */
  private final DirectoryBackingStore store;
  /**
   * Writes, truncates and fsyncs go here: {@code fd} when it was opened for writing, else -1
   * until {@link #writeFd} reopens the file for writing (each writeback retry tries again, so
   * fixing the file's mode is enough). Guarded by this.
   */
  private int writeFd;
  /** A second descriptor with O_DIRECT for writeback; -2 until tried, -1 if unsupported. */
  private int directFd = -2;

  /**
   * Everything below goes through the descriptors, never the path the file was opened with:
   * the file may be renamed or unlinked while open, and a lookup by a stale path would find
   * nothing (or another file) and make writeback think the file was gone. {@code path} only
   * names the file in error messages.
   */
  DirectoryBackingFile(DirectoryBackingStore store, int fd, int writeFd, Path path, Runnable beforeIo) {
    this.store = store;
    this.beforeIo = beforeIo;
    this.fd = fd;
    this.writeFd = writeFd;
    this.path = path;
  }

  /**
   * The descriptor to write through. Reopens this very file (even if renamed since) through
   * /proc/self/fd, never by a path looked up again; fails, naming the file, cause and fix,
   * while it still cannot be written.
   */
  private synchronized int writeFd() throws NativeIOException {
    if (writeFd < 0) {
      try {
        writeFd = LibC.open("/proc/self/fd/" + fd, LibC.O_RDWR, 0);
      } catch (NativeIOException e) {
        throw DirectoryBackingStore.isReadOnlyError(e.errno())
            ? DirectoryBackingStore.notWritable(path, e.errno()) : e;
      }
    }
    return writeFd;
  }

  @Override
  public long read(long position, long dstAddress, long length) throws IOException {
    store.beforeRead();
    return LibC.pread(fd, dstAddress, length, position);
  }

  @Override
  public void write(long position, long srcAddress, long length) throws IOException {
    store.checkWriteGuard();
    beforeIo.run();
    LibC.pwrite(writeFd(), srcAddress, length, position);
  }

  @Override
  public void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
    store.checkWriteGuard();
    beforeIo.run();
    int wfd = writeFd();
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
    LibC.pwritev(wfd, data, position);
  }

  /** Reopens this very file (even if renamed or unlinked since) through /proc/self/fd. */
  private synchronized int directFd() {
    if (directFd == -2) {
      try {
        directFd = LibC.open("/proc/self/fd/" + writeFd, LibC.O_WRONLY | LibC.O_DIRECT
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
  public int statInto(long statBuf) {
    return LibC.fstat(fd, statBuf);
  }

  @Override
  public void truncate(long size) throws IOException {
    store.checkWriteGuard();
    beforeIo.run();
    LibC.ftruncate(writeFd(), size);
  }

  @Override
  public void zeroRange(long position, long length, boolean punch) throws IOException {
    beforeIo.run();
    int mode = LibC.FALLOC_FL_KEEP_SIZE
        | (punch ? LibC.FALLOC_FL_PUNCH_HOLE : LibC.FALLOC_FL_ZERO_RANGE);
    int rc = LibC.fallocate(writeFd(), mode, position, length);
    if (rc == -EOPNOTSUPP || rc == -ENOSYS) {
      // Not on this filesystem (sshfs, NFSv3, older FUSE ones; ZERO_RANGE on tmpfs):
      // zeros written read the same.
      BackingStore.BackingFile.writeZeros(this, position, length);
    } else {
      LibC.check(rc, (punch ? "punching a hole in " : "zeroing a range of ") + path);
    }
  }

  @Override
  public void sync() throws IOException {
    beforeIo.run();
    LibC.fsync(writeFd());
  }

  @Override
  public void setMtime(long mtimeNanos) throws IOException {
    LibC.futimesMtime(fd, mtimeNanos);
  }

  @Override
  public void close() throws IOException {
    closeDirect();
    synchronized (this) {
      if (writeFd >= 0 && writeFd != fd) {
        LibC.close(writeFd);
      }
      writeFd = -1;
    }
    LibC.close(fd);
  }
}
