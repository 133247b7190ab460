package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import java.io.IOException;
import java.util.function.Predicate;

/**
 * The origin the cache writes back to: a directory tree, addressed by paths relative to its root
 * ("" is the root, no leading slash). Owned by the engine so that every ordering rule can be
 * tested in-process, including with a store that fails. Names, modes, owners and times change
 * only through the engine (the filesystem layer asks {@link WriteCache}, whose namespace part
 * settles the journal's records first). The filesystem layer reaches the backing directory
 * only through this interface: besides those, it looks itself ({@link #list}, {@link
 * #readlink}, {@link #access}, {@link #statfs}, {@link #statInto}) and passes extended
 * attributes on ({@link #getXattr} and the rest), after settling the journal's records on the
 * name through {@link WriteCache}.
 *
 * <p>Errors: a failed call throws an IOException that says which errno it stands for, so that
 * the filesystem can answer it: {@link io.wcfs.nativ.NativeIOException} with the call's own
 * errno ({@link DirectoryBackingStore}), or java.nio's kinds ({@link
 * java.nio.file.NoSuchFileException} for ENOENT, {@link
 * java.nio.file.FileAlreadyExistsException} for EEXIST, {@link
 * java.nio.file.DirectoryNotEmptyException}, {@link java.nio.file.NotDirectoryException}).
 */
public interface BackingStore {
  /**
   * What the engine needs of a file's metadata. {@code (dev, ino)} tells files apart while
   * they are open; it is not an identity that survives a remount (network filesystems renumber
   * inodes), so nothing persistent rests on it alone.
   */
  record Stat(long dev, long ino, long size, long mtimeNanos, int nlink, boolean regularFile,
      boolean directory) {}

  /** The directory holding {@code path} ("" for a name in the root). */
  static String parentOf(String path) {
    int slash = path.lastIndexOf('/');
    return slash < 0 ? "" : path.substring(0, slash);
  }

  /**
   * A time for {@link #setTimes}, as utimensat(2) takes it: seconds and nanoseconds since the
   * epoch, or {@link #NOW} (the backing filesystem's clock), or {@link #OMIT} (left as it is).
   * Seconds and nanoseconds apart, so that any time the kernel sends reaches the backing file
   * as sent.
   */
  record TimeSpec(long seconds, long nanos) {
    /** utimensat's UTIME_NOW, in tv_nsec. */
    public static final long UTIME_NOW = (1L << 30) - 1;
    /** utimensat's UTIME_OMIT, in tv_nsec. */
    public static final long UTIME_OMIT = (1L << 30) - 2;
    public static final TimeSpec NOW = new TimeSpec(0, UTIME_NOW);
    public static final TimeSpec OMIT = new TimeSpec(0, UTIME_OMIT);

    public boolean isNow() {
      return nanos == UTIME_NOW;
    }

    public boolean isOmit() {
      return nanos == UTIME_OMIT;
    }

    /** Nanoseconds since the epoch; only for a time that is neither NOW nor OMIT. */
    public long toNanos() {
      return seconds * 1_000_000_000L + nanos;
    }
  }

  /** statvfs(3) of the filesystem holding the directory: what statfs through the mount shows. */
  record FsStats(long blockSize, long fragmentSize, long blocks, long blocksFree,
      long blocksAvailable, long files, long filesFree, long filesAvailable, long fsid,
      long flags, long nameMax) {}

  /** lstat; null when the path does not exist. */
  Stat stat(String path) throws IOException;

  /** Opens an existing regular file for reading and writing. */
  BackingFile open(String path) throws IOException;

  /**
   * Creates an empty regular file (mode 0600) and any missing parent directories; an existing
   * regular file is left as it is. For data that has to be put somewhere: lost+found.
   */
  void createFile(String path) throws IOException;

  /**
   * A new empty regular file that no name reaches, with this mode and owner, open for reading
   * and writing: created in {@code dir} (made if missing) and unlinked at once. A crash may
   * leave it there (the unlink not durable yet), with what was written to it: the next mount
   * removes it. NFS keeps it as a hidden {@code .nfs} file in that directory until it is
   * closed. For a file unlinked while open whose blocks leave the cache (Spill).
   */
  default BackingFile createUnnamed(String dir, int mode, int uid, int gid) throws IOException {
    String path = dir + "/spill-" + java.util.UUID.randomUUID();
    if (stat(dir) == null) {
      for (int slash = dir.indexOf('/'); ; slash = dir.indexOf('/', slash + 1)) {
        String d = slash < 0 ? dir : dir.substring(0, slash);
        try {
          mkdir(d, 0700);
        } catch (IOException e) {
          if (stat(d) == null) {
            throw e;
          }
        }
        if (slash < 0) {
          break;
        }
      }
    }
    BackingFile file = create(path, mode, uid, gid);
    try {
      unlink(path);
    } catch (IOException | RuntimeException e) {
      file.close();
      throw e;
    }
    return file;
  }

  /**
   * Creates a new regular file with exactly this mode (no umask) and owner, failing with
   * {@link java.nio.file.FileAlreadyExistsException} if the name exists; open for reading and
   * writing. Writeback's application of a journaled create.
   */
  BackingFile create(String path, int mode, int uid, int gid) throws IOException;

  /**
   * fsync of a directory: makes the names created, removed or renamed in it durable. The
   * engine calls it before a commit that relies on those names.
   */
  void syncDirectory(String path) throws IOException;

  /**
   * syncfs(2) of the filesystem holding the directory: every change pending on it made
   * durable, names and data, whoever made them. Recovery calls it first: a daemon killed in
   * the same boot may have left changes its next commit was to make durable (directories
   * changed outside the journal, size-only changes of files with nothing cached), which the
   * restarted engine does not know of. Nothing to do by default.
   */
  default void syncAll() throws IOException {}

  void unlink(String path) throws IOException;

  void rename(String from, String to) throws IOException;

  // ---- what the journal does not take: done now, by the engine, after settling the names ----

  /** mkdir(2); the mode as given, the backing filesystem applies the daemon's umask. */
  void mkdir(String path, int mode) throws IOException;

  /** rmdir(2). */
  void rmdir(String path) throws IOException;

  /** link(2): {@code to} becomes another name of {@code from} (a symlink itself, not followed). */
  void link(String from, String to) throws IOException;

  /** symlink(2): {@code path} becomes a symbolic link holding {@code target} as given. */
  void symlink(String target, String path) throws IOException;

  /** mknod(2): a device, FIFO or socket node; {@code mode} holds its type. */
  void mknod(String path, int mode, long rdev) throws IOException;

  /** chmod(2): follows a final symlink, since Linux cannot change a symlink's own mode. */
  void chmod(String path, int mode) throws IOException;

  /** lchown(2): a final symlink itself; -1 leaves that id as it is. */
  void chown(String path, int uid, int gid) throws IOException;

  /** utimensat(2) of {@code path} itself (a final symlink is not followed). */
  void setTimes(String path, TimeSpec atime, TimeSpec mtime) throws IOException;

  // ---- looking: what the mount shows of names the journal does not decide -----------------

  /**
   * Calls {@code each} with the name of every entry of the directory {@code dir}, "." and ".."
   * left out, until it returns false.
   */
  void list(String dir, Predicate<String> each) throws IOException;

  /** readlink(2): the target, as stored (not necessarily UTF-8). EINVAL: not a symlink. */
  byte[] readlink(String path) throws IOException;

  /** access(2) by this process (the daemon's real ids): returns if allowed, else throws. */
  void access(String path, int mask) throws IOException;

  /** statvfs(3) of the filesystem holding the backing directory. */
  FsStats statfs() throws IOException;

  /**
   * lstat(2) of {@code path} into the caller's native {@code struct stat} at {@code statBuf}
   * (the kernel's layout for this architecture, room for at least {@code io.wcfs.nativ.LibC
   * .STAT_SIZE} bytes): FUSE's getattr, the most frequent request, fills the kernel's buffer in
   * place, with no copy and no allocation. Returns 0 or -errno, not an exception: ENOENT is an
   * ordinary answer there (negative lookups). Runs no hand-off hook (getattr is answered
   * without handing the request loop on; see the FUSE layer's Op table).
   */
  int statInto(String path, long statBuf);

  // ---- extended attributes, passed to the backing node as they are --------------------------
  //
  // As the *xattr(2) calls on the node itself (a final symlink not followed): each returns what
  // the call returns, a length or 0, or -errno (ENODATA, ERANGE and ENOTSUP are ordinary
  // answers, and the FUSE layer hands the number to the kernel as it is). Buffers are native
  // addresses; a size of 0 asks for the length. None runs a hand-off hook or asks the write
  // guard: the FUSE layer does both per operation (a write's removal of security.capability
  // neither hands off nor fails with the claim; a setxattr does both), and the caller settles
  // the journal's records on the name first ({@link WriteCache#settle}).

  /** getxattr(2): the value's length, or -errno (ENODATA: none of that name). */
  long getXattr(String path, String name, long buf, long size);

  /** listxattr(2): the length of the NUL-separated names, or -errno. */
  long listXattrs(String path, long buf, long size);

  /** setxattr(2) with its flags (XATTR_CREATE, XATTR_REPLACE): 0 or -errno. */
  int setXattr(String path, String name, long value, long size, int flags);

  /** removexattr(2): 0 or -errno (ENODATA: none of that name). */
  int removeXattr(String path, String name);

  /** A backing node held open so that a change of its attributes can be made durable later. */
  interface HeldNode extends AutoCloseable {
    /** fsync(2) of the node. */
    void sync() throws IOException;

    @Override
    void close() throws IOException;
  }

  /**
   * Opens the regular file or directory at {@code path} (read-only, whatever its mode allows
   * the daemon; a final symlink not followed, a FIFO not waited for) to fsync it after a
   * change of its extended attributes. Null when the node cannot be synced by itself: a
   * symlink, a device or socket, or a node this process may not open; its directory's fsync
   * then makes the change durable. Throws when it is gone or cannot be opened otherwise. Runs
   * no hand-off hook, like the xattr calls.
   */
  HeldNode holdToSync(String path) throws IOException;

  /**
   * Asked before every writeback batch: throws when this cache may not write to the backing
   * directory now, e.g. because its claim on a directory of a shared filesystem lapsed or was
   * taken over by another machine (DESIGN.md, "Backing directory on a shared or distributed
   * filesystem"). The batch then fails as after a backing I/O error: its blocks stay in the
   * cache and writeback retries with backoff. The exception's message says why and is shown by
   * status. Always allowed by default.
   */
  default void checkMayWriteBack() throws IOException {}

  /** The directory's identity, recorded in the superblock. */
  CacheLayout.BackingIdentity identity() throws IOException;

  /** An open backing file; positional I/O with native addresses. */
  interface BackingFile extends AutoCloseable {
    /** Reads up to {@code length} bytes; fewer only at end of file. */
    long read(long position, long dstAddress, long length) throws IOException;

    void write(long position, long srcAddress, long length) throws IOException;

    /**
     * Writeback's write of whole cache blocks (the caller truncates any excess past the end of
     * file), gathered from the buffers of {@code data} and written back to back from {@code
     * position}; with {@code direct}, bypassing the page cache where the filesystem allows.
     * Durable, like {@link #write}, only after {@link #sync}.
     */
    default void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
      for (int i = 0; i < data.count(); i++) {
        write(position, data.base(i), data.length(i));
        position += data.length(i);
      }
    }

    /** The size of the open file itself (fstat), whatever path names it now. */
    long size() throws IOException;

    /** fstat of the open file into a struct stat at {@code statBuf}: 0 or -errno. */
    default int statInto(long statBuf) {
      return -38; // ENOSYS
    }

    void truncate(long size) throws IOException;

    /**
     * Makes {@code [position, position + length)} read as zeros without changing the file's
     * size, deallocating it where the filesystem can ({@code FALLOC_FL_PUNCH_HOLE |
     * FALLOC_FL_KEEP_SIZE}), keeping it allocated with {@code punch} false ({@code
     * FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE}). A filesystem without either gets zeros
     * written, which reads the same. Durable, like {@link #write}, only after {@link #sync}.
     */
    default void zeroRange(long position, long length, boolean punch) throws IOException {
      writeZeros(this, position, length);
    }

    /** fsync: data and size durable. */
    void sync() throws IOException;

    /** Sets the open file's own mtime (futimens), whatever path names it now. */
    void setMtime(long mtimeNanos) throws IOException;

    @Override
    void close() throws IOException;

    /** Writes zeros over the part of the range below the file's end (never extends it). */
    static void writeZeros(BackingFile file, long position, long length) throws IOException {
      long end = Math.min(position + length, file.size());
      if (end <= position) {
        return;
      }
      int chunk = (int) Math.min(1 << 20, end - position);
      try (io.wcfs.nativ.NativeBuffer zeros = new io.wcfs.nativ.NativeBuffer(chunk)) {
        io.wcfs.nativ.NativeBuffer.zero(zeros.address(), chunk);
        for (long p = position; p < end; p += chunk) {
          file.write(p, zeros.address(), Math.min(chunk, end - p));
        }
      }
    }
  }
}
