package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A real directory that records what the engine asks of it (in order), can renumber every
 * inode as a remounted network filesystem does, and can run a hook inside file fsyncs and
 * directory fsyncs (to hold one up or fail it, and to look at the cache at that moment).
 */
final class RecordingBackingStore extends ForwardingBackingStore {
  interface Hook {
    void run(String path) throws IOException;
  }

  final List<String> events = new ArrayList<>();
  /** Added to every inode number stat reports: a remount of sshfs, NFS, GlusterFS. */
  volatile long inodeOffset;
  volatile Hook onFileSync = p -> { };
  volatile Hook onDirectorySync = p -> { };
  /** Runs when writeback asks whether it may write (after it took its batch). */
  volatile Hook beforeWriteback = p -> { };

  @Override
  public void checkMayWriteBack() throws IOException {
    beforeWriteback.run("");
  }

  RecordingBackingStore(Path root) throws IOException {
    super(new DirectoryBackingStore(root));
  }

  private synchronized void record(String event) {
    events.add(event);
  }

  synchronized List<String> events() {
    return new ArrayList<>(events);
  }

  @Override
  public Stat stat(String path) throws IOException {
    Stat s = real.stat(path);
    return s == null ? null : new Stat(s.dev(), s.ino() + inodeOffset, s.size(), s.mtimeNanos(),
        s.nlink(), s.regularFile(), s.directory());
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
        f.write(position, srcAddress, length);
      }

      @Override
      public void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
        f.writeBlocks(position, data, direct);
      }

      @Override
      public long size() throws IOException {
        return f.size();
      }

      @Override
      public void truncate(long size) throws IOException {
        record("truncate " + path + " " + size);
        f.truncate(size);
      }

      @Override
      public void zeroRange(long position, long length, boolean punch) throws IOException {
        record((punch ? "punch " : "zero ") + path + " " + position + " " + length);
        f.zeroRange(position, length, punch);
      }

      @Override
      public void sync() throws IOException {
        onFileSync.run(path);
        record("fsync " + path);
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
    record("create " + path); // journaled create applied
    real.create(path, mode, uid, gid).close();
    return open(path);
  }

  @Override
  public void createFile(String path) throws IOException {
    record("create " + path);
    real.createFile(path);
  }

  @Override
  public void syncDirectory(String path) throws IOException {
    onDirectorySync.run(path);
    record("fsyncdir " + path);
    real.syncDirectory(path);
  }

  @Override
  public void unlink(String path) throws IOException {
    record("unlink " + path);
    real.unlink(path);
  }

  @Override
  public void rename(String from, String to) throws IOException {
    record("rename " + from + " " + to);
    real.rename(from, to);
  }

  // Names and attributes the journal does not take: recorded like unlink and rename; reads
  // are not recorded.

  @Override
  public void mkdir(String path, int mode) throws IOException {
    record("mkdir " + path);
    real.mkdir(path, mode);
  }

  @Override
  public void rmdir(String path) throws IOException {
    record("rmdir " + path);
    real.rmdir(path);
  }

  @Override
  public void link(String from, String to) throws IOException {
    record("link " + from + " " + to);
    real.link(from, to);
  }

  @Override
  public void symlink(String target, String path) throws IOException {
    record("symlink " + path);
    real.symlink(target, path);
  }

  @Override
  public void mknod(String path, int mode, long rdev) throws IOException {
    record("mknod " + path);
    real.mknod(path, mode, rdev);
  }

  @Override
  public void chmod(String path, int mode) throws IOException {
    record("chmod " + path);
    real.chmod(path, mode);
  }

  @Override
  public void chown(String path, int uid, int gid) throws IOException {
    record("chown " + path);
    real.chown(path, uid, gid);
  }

  @Override
  public void setTimes(String path, TimeSpec atime, TimeSpec mtime) throws IOException {
    record("utimens " + path);
    real.setTimes(path, atime, mtime);
  }
}
