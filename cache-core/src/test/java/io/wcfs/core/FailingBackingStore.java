package io.wcfs.core;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A real directory whose file writes and fsyncs fail (EIO-like) while {@link #failing} is set,
 * and whose writes take {@link #slowWriteMillis} longer (a slow disk widens race windows).
 */
final class FailingBackingStore extends ForwardingBackingStore {
  volatile boolean failing;
  volatile int failures;
  volatile int slowWriteMillis;
  /** Answers no to {@link #checkMayWriteBack} (a lost claim) while set; writes still work. */
  volatile boolean refuseWriteback;

  FailingBackingStore(Path root) throws IOException {
    super(new DirectoryBackingStore(root));
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

}
