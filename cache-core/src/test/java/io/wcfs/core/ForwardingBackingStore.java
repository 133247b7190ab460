package io.wcfs.core;

import java.io.IOException;
import java.util.function.Predicate;

/**
 * A backing store that passes every call to another one: the test doubles extend it and
 * override only the calls they fail, record or model. syncAll and checkMayWriteBack keep the
 * interface's defaults (nothing to sync, always allowed), as the doubles had them.
 */
abstract class ForwardingBackingStore implements BackingStore {
  protected final BackingStore real;

  ForwardingBackingStore(BackingStore real) {
    this.real = real;
  }

  @Override
  public Stat stat(String path) throws IOException {
    return real.stat(path);
  }

  @Override
  public BackingFile open(String path) throws IOException {
    return real.open(path);
  }

  @Override
  public void createFile(String path) throws IOException {
    real.createFile(path);
  }

  @Override
  public BackingFile create(String path, int mode, int uid, int gid) throws IOException {
    return real.create(path, mode, uid, gid);
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
  public void list(String dir, Predicate<String> each) throws IOException {
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
