package io.wcfs.core;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A real directory whose file writes and fsyncs fail (EIO-like) while {@link #failing} is set,
 * and whose writes take {@link #slowWriteMillis} longer (a slow disk widens race windows).
 */
final class FailingBackingStore implements BackingStore {
  private final DirectoryBackingStore real;
  volatile boolean failing;
  volatile int failures;
  volatile int slowWriteMillis;
  /** Answers no to {@link #checkMayWriteBack} (a lost claim) while set; writes still work. */
  volatile boolean refuseWriteback;

  FailingBackingStore(Path root) throws IOException {
    real = new DirectoryBackingStore(root);
  }

  /**
   * When 0 or more: that many more file writes, truncates and fsyncs succeed, then {@link
   * #failing} is set (a disk that fails in the middle of a drain).
   */
  volatile int failAfter = -1;

  private void maybeFail(String what) throws IOException {
    if (failAfter >= 0 && failAfter-- == 0) {
      failing = true;
    }
    if (failing) {
      failures++;
      throw new IOException("injected backing failure: " + what);
    }
  }

  @Override
  public void checkMayWriteBack() throws IOException {
    if (refuseWriteback) {
      throw new IOException("claim lost (test): may not write back");
    }
  }

  @Override
  public Stat stat(String path) throws IOException {
    return real.stat(path);
  }

  @Override
  public BackingFile open(String path) throws IOException {
    BackingFile f = real.open(path);
    return new BackingFile() {
      @Override
      public long read(long position, long dstAddress, long length) throws IOException {
        return f.read(position, dstAddress, length);
      }

      @Override
      public void write(long position, long srcAddress, long length) throws IOException {
        maybeFail("write");
        if (slowWriteMillis > 0) {
          try {
            Thread.sleep(slowWriteMillis);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
        }
        f.write(position, srcAddress, length);
      }

      @Override
      public long size() throws IOException {
        return f.size();
      }

      @Override
      public void truncate(long size) throws IOException {
        maybeFail("truncate");
        f.truncate(size);
      }

      @Override
      public void sync() throws IOException {
        maybeFail("fsync");
        f.sync();
      }

      @Override
      public void setMtime(long mtimeNanos) throws IOException {
        f.setMtime(mtimeNanos);
      }

      @Override
      public void close() throws IOException {
        f.close();
      }
    };
  }

  @Override
  public BackingFile create(String path, int mode, int uid, int gid) throws IOException {
    // through open(), so the file is wrapped like any other
    real.create(path, mode, uid, gid).close();
    return open(path);
  }

  @Override
  public void createFile(String path) throws IOException {
    real.createFile(path);
  }

  @Override
  public void syncDirectory(String path) throws IOException {
    real.syncDirectory(path);
  }

  @Override
  public void unlink(String path) throws IOException {
    real.unlink(path);
  }

  @Override
  public void rename(String from, String to) throws IOException {
    real.rename(from, to);
  }

  // Names and attributes: passed through, as unlink and rename are (only file I/O fails).

  @Override
  public void mkdir(String path, int mode) throws IOException {
    real.mkdir(path, mode);
  }

  @Override
  public void rmdir(String path) throws IOException {
    real.rmdir(path);
  }

  @Override
  public void link(String from, String to) throws IOException {
    real.link(from, to);
  }

  @Override
  public void symlink(String target, String path) throws IOException {
    real.symlink(target, path);
  }

  @Override
  public void mknod(String path, int mode, long rdev) throws IOException {
    real.mknod(path, mode, rdev);
  }

  @Override
  public void chmod(String path, int mode) throws IOException {
    real.chmod(path, mode);
  }

  @Override
  public void chown(String path, int uid, int gid) throws IOException {
    real.chown(path, uid, gid);
  }

  @Override
  public void setTimes(String path, TimeSpec atime, TimeSpec mtime) throws IOException {
    real.setTimes(path, atime, mtime);
  }

  @Override
  public void list(String dir, java.util.function.Predicate<String> each) throws IOException {
    real.list(dir, each);
  }

  @Override
  public byte[] readlink(String path) throws IOException {
    return real.readlink(path);
  }

  @Override
  public void access(String path, int mask) throws IOException {
    real.access(path, mask);
  }

  @Override
  public FsStats statfs() throws IOException {
    return real.statfs();
  }

  @Override
  public int statInto(String path, long statBuf) {
    return real.statInto(path, statBuf);
  }

  @Override
  public long getXattr(String path, String name, long buf, long size) {
    return real.getXattr(path, name, buf, size);
  }

  @Override
  public long listXattrs(String path, long buf, long size) {
    return real.listXattrs(path, buf, size);
  }

  @Override
  public int setXattr(String path, String name, long value, long size, int flags) {
    return real.setXattr(path, name, value, size, flags);
  }

  @Override
  public int removeXattr(String path, String name) {
    return real.removeXattr(path, name);
  }

  @Override
  public HeldNode holdToSync(String path) throws IOException {
    return real.holdToSync(path);
  }

  @Override
  public CacheLayout.BackingIdentity identity() throws IOException {
    return real.identity();
  }
}
