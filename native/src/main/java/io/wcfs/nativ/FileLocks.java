package io.wcfs.nativ;

/**
 * Advisory locks on whole files, the two kinds wcfs takes: a BSD {@code flock} on a cache
 * file's lock file (one daemon per cache on this machine) and an open-file-description lock on
 * a backing directory's claim file (one cache per backing directory, across machines where the
 * filesystem's locks span them). Both belong to the open file description, so closing another
 * descriptor of the same file never drops them. Calls go through {@link LibC}'s bindings.
 */
public final class FileLocks {
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();

  private FileLocks() {}

  /**
   * flock(LOCK_EX | LOCK_NB): true if taken. A BSD lock belongs to the open file description,
   * so unlike fcntl locks it survives other descriptors of the same file being closed (libpmem
   * opens and closes the cache file while mapping it).
   */
  public static boolean tryLockExclusive(int fd) throws NativeIOException {
    if (LibC.API.flock(fd, 2 | 4) == 0) {
      return true;
    }
    int errno = LibC.RUNTIME.getLastError();
    if (errno == 11) { // EWOULDBLOCK
      return false;
    }
    throw new NativeIOException("flock: " + LibC.API.strerror(errno), errno);
  }

  private static final int F_OFD_GETLK = 36;
  private static final int F_OFD_SETLK = 37;
  private static final short F_WRLCK = 1;
  private static final short F_UNLCK = 2;
  /** sizeof(struct flock) on x86-64 and arm64: type, whence, start, len, pid, padding. */
  private static final int FLOCK_SIZE = 32;

  /**
   * F_OFD_SETLK of a write lock on the whole file: true if taken, false if another open file
   * description holds a conflicting lock. An open-file-description lock belongs to this
   * descriptor's open file, not to the process: closing another descriptor of the same file
   * (anywhere in the JVM) does not drop it, as it would a process-wide fcntl lock. Filesystems
   * that implement locks on a server (GlusterFS, NFS, CephFS) check it against their other
   * clients too; others (sshfs) only against this machine.
   */
  public static boolean tryOfdLockExclusive(int fd) throws NativeIOException {
    return ofdLock(fd, F_OFD_SETLK, F_WRLCK) == F_UNLCK;
  }

  /** Drops this open file description's lock (F_OFD_SETLK, F_UNLCK). */
  public static void ofdUnlock(int fd) throws NativeIOException {
    ofdLock(fd, F_OFD_SETLK, F_UNLCK);
  }

  /**
   * F_OFD_GETLK: whether another open file description (of this process or any other, on
   * this machine or, where the filesystem's locks span machines, another) holds a lock that
   * would conflict with a write lock on the whole file.
   */
  public static boolean ofdLockedByOther(int fd) throws NativeIOException {
    return ofdLock(fd, F_OFD_GETLK, F_WRLCK) != F_UNLCK;
  }

  /**
   * One lock call over the whole file. For SETLK: F_UNLCK if done, F_WRLCK if another
   * description holds a conflicting lock; for GETLK: the type of the conflicting lock found,
   * or F_UNLCK.
   */
  private static short ofdLock(int fd, int cmd, short type) throws NativeIOException {
    try (NativeBuffer fl = new NativeBuffer(FLOCK_SIZE)) {
      NativeBuffer.zero(fl.address(), FLOCK_SIZE); // whence SEEK_SET, start 0, len 0 (all), pid 0
      IO.putShort(fl.address(), type);
      if (LibC.API.fcntl(fd, cmd, fl.address()) < 0) {
        int errno = LibC.RUNTIME.getLastError();
        if (cmd == F_OFD_SETLK && (errno == LibC.EAGAIN || errno == 13)) { // EACCES: same meaning
          return F_WRLCK;
        }
        throw new NativeIOException((cmd == F_OFD_SETLK ? "fcntl F_OFD_SETLK" : "fcntl"
            + " F_OFD_GETLK") + ": " + LibC.API.strerror(errno), errno);
      }
      return cmd == F_OFD_SETLK ? F_UNLCK : IO.getShort(fl.address());
    }
  }
}
