package io.wcfs.fs;

import io.wcfs.core.BackingStore;
import io.wcfs.core.WriteCache;
import io.wcfs.fs.OperationGuard.IoCall;
import io.wcfs.fs.OperationGuard.Op;
import io.wcfs.nativ.LibC;
import java.io.IOException;
import java.util.Map;
import java.util.concurrent.atomic.LongAccumulator;
import jnr.ffi.Pointer;
import jnr.ffi.Struct;
import jnr.ffi.types.mode_t;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import ru.serce.jnrfuse.ErrorCodes;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.Statvfs;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The FUSE face of wcfs: file data and every change of a name or an attribute go through the
 * {@link WriteCache} (its namespace part settles the journal's records first and has the next
 * commit fsync the directories changed); names, modes, owners and times live in the backing
 * directory. Every callback returns 0 or -errno and never lets an exception reach native code:
 * unexpected ones are logged with the path and become EIO.
 *
 * <p>Lookups the journal does not decide (getattr, readdir, readlink, access, statfs) and
 * extended attributes ask the {@link BackingStore} ({@link ShownAttributes}, {@link Xattrs}):
 * this layer makes no call on a backing path itself. The store reaches every name relative to
 * a descriptor of its root (the *at calls, as libfuse's passthrough_ll does): a path below the
 * mount may be as long as the kernel allows, although the backing root's path plus it is
 * longer than PATH_MAX.
 *
 * <p>Extended attributes are passed to the backing node ({@link Xattrs}); with them answered,
 * this daemon handles kill-priv itself (FUSE_HANDLE_KILLPRIV_V2, negotiated in {@link
 * FuseLoop}): writes, truncates and chowns clear set-ID bits and remove security.capability,
 * so the kernel does not ask for the capability before every write. {@code -o noxattr} answers
 * ENOSYS instead, as wcfs did before.
 */
final class WcfsFileSystem extends FuseStubFS {
  private static final int ENOSYS = 38;
  private static final int O_ACCMODE = 3;
  private static final int O_CREAT = 0100;
  private static final int O_EXCL = 0200;
  private static final int O_DSYNC = 010000;
  private static final int O_SYNC = 04010000;

  private static final int FALLOC_FL_KEEP_SIZE = 0x01;
  private static final int FALLOC_FL_PUNCH_HOLE = 0x02;
  private static final int FALLOC_FL_ZERO_RANGE = 0x10;

  private static final int S_ISUID = 04000;
  private static final int S_ISGID = 02000;

  private final WriteCache cache;
  /**
   * The backing store: for what the mount shows of names the journal does not decide.
   * Changes go through {@link #cache}.
   */
  private final BackingStore backing;
  /** Reserved names, the claim on the backing directory, exceptions to errno. */
  private final OperationGuard guard;
  /** The attributes the mount shows (the namespace journal's overlay first). */
  private final ShownAttributes attributes;
  /** Owners and modes as a local filesystem keeps them. */
  private final PermissionRules permissions;
  private final OpenFiles openFiles = new OpenFiles();
  /** The largest write request the kernel sent: shows what max_write it agreed to. */
  private final LongAccumulator largestWrite = new LongAccumulator(Math::max, 0);
  private final Xattrs xattrs;
  /** fsync/fdatasync/O_SYNC commits requested through the mount, observed by the metrics. */
  private volatile java.util.function.LongConsumer commitObserver = nanos -> { };

  long largestWrite() {
    return largestWrite.get();
  }

  WcfsFileSystem(WriteCache cache, BackingStore backing) {
    this(cache, backing, true);
  }

  WcfsFileSystem(WriteCache cache, BackingStore backing, boolean xattrsOn) {
    this.cache = cache;
    this.backing = backing;
    this.guard = new OperationGuard(backing);
    this.attributes = new ShownAttributes(cache, backing);
    this.permissions = new PermissionRules(cache, attributes);
    this.xattrs = new Xattrs(backing, xattrsOn, cache::namespaceChanged);
    FuseWorker.onForget(xattrs::forget);
    FuseWorker.onCreate(openFiles::opened);
    DataRequests.register(new DataHandler());
    // flag_nullpath_ok, which jnr-fuse declares but cannot set: bit 0 of the unsigned int
    // after the 38 function pointers of libfuse2's struct fuse_operations. With -o hard_remove
    // (Daemon) a file unlinked or renamed over while open has no path left, and libfuse2 then
    // calls the operations that carry a handle with a null path instead of failing them.
    Pointer ops = Struct.getMemory(fuseOperations);
    ops.putInt(FUSE_OPS_FLAGS, ops.getInt(FUSE_OPS_FLAGS) | 1);
  }

  /** Where libfuse2's struct fuse_operations has its flags (flag_nullpath_ok is bit 0). */
  private static final int FUSE_OPS_FLAGS = 38 * 8;

  Xattrs xattrs() {
    return xattrs;
  }

  void observeCommits(java.util.function.LongConsumer observer) {
    commitObserver = observer;
  }

  /** A commit a caller waits for: attribute changes first, then the cache's commit. */
  private void commitForCaller() throws IOException {
    long start = System.nanoTime();
    xattrs.syncPending();
    cache.commit();
    commitObserver.accept(System.nanoTime() - start);
  }

  /** The fuse_operations table jnr-fuse filled in, for {@link FuseLoop}. */
  Struct operations() {
    return fuseOperations;
  }

  @Override
  protected String getFSName() {
    return "wcfs";
  }

  /** "/a/b" -> "a/b", relative to the backing root ("" for the root), as the engine takes it. */
  static String rel(String path) {
    return path.length() <= 1 ? "" : path.substring(1);
  }


  /** See {@link OperationGuard#run}. */
  private int guard(Op op, String path, IoCall call) {
    return guard.run(op, path, call);
  }

  /** Who made the request being processed. */
  private PermissionRules.Caller caller() {
    var ctx = getContext();
    return new PermissionRules.Caller((int) ctx.uid.get(), (int) ctx.gid.get(),
        (int) ctx.pid.get());
  }


  // ---- attributes ---------------------------------------------------------------------------

  @Override
  public int getattr(String path, FileStat stat) {
    return guard(Op.GETATTR, path, () -> attributes.stat(path, stat));
  }

  /**
   * Every GETATTR comes here (FuseWorker marks it as for an open file), so that libfuse2 calls
   * with a null path for a node whose name is gone instead of answering ENOENT; the handle in
   * {@code fi} is not one (the kernel sends none with fstat): the file is found by its node.
   */
  @Override
  public int fgetattr(String path, FileStat stat, FuseFileInfo fi) {
    if (path != null) {
      return getattr(path, stat);
    }
    long node = FuseWorker.currentNodeId();
    return guard(Op.GETATTR, "(unlinked, node " + node + ")", () -> {
      OpenFiles.Handle h = openFiles.onNode(node);
      return h == null ? -ErrorCodes.ENOENT() : attributes.statOpen(h.file, stat);
    });
  }

  @Override
  public int chmod(String path, @mode_t long mode) {
    return guard(Op.CHMOD, path, () -> {
      long ino;
      if (cache.setAttributes(rel(path), (int) mode, null, null, null, null)) {
        ino = cache.shown(rel(path)).ino(); // not in the backing directory yet
      } else {
        cache.chmod(rel(path), (int) mode);
        ino = attributes.backingStatus(path).ino();
      }
      if ((mode & (S_ISUID | S_ISGID)) != 0) {
        openFiles.mayHaveSetId(ino); // its handles must check their writes from now on
      }
      return 0;
    });
  }

  @Override
  public int chown(String path, long uid, long gid) {
    return guard(Op.CHOWN, path, () -> {
      if (cache.setAttributes(rel(path), null, (int) uid == -1 ? null : (int) uid,
          (int) gid == -1 ? null : (int) gid, null, null)) {
        return 0;
      }
      cache.chown(rel(path), (int) uid, (int) gid);
      if (attributes.backingStatus(path).type() != FileStat.S_IFDIR) {
        // The backing kernel removed it too when it ran the chown (local filesystems do); a
        // backing store that does not must not keep a capability for the new owner.
        xattrs.dropCapability(rel(path), FuseWorker.currentNodeId());
      }
      return 0;
    });
  }

  @Override
  public int utimens(String path, Timespec[] timespec) {
    return guard(Op.UTIMENS, path, () -> {
      if (cache.setAttributes(rel(path), null, null, null, ShownAttributes.timeOf(timespec[0]),
          ShownAttributes.timeOf(timespec[1]))) {
        return 0;
      }
      // As the kernel sent them (UTIME_NOW: the backing filesystem's clock); a cached file
      // keeps the new mtime, so that writeback does not undo it.
      cache.setTimes(rel(path), timeSpec(timespec[0]), timeSpec(timespec[1]));
      return 0;
    });
  }

  @Override
  public int access(String path, int mask) {
    return guard(Op.ACCESS, path, () -> {
      // Refused access throws with its errno (guard answers it).
      Integer rc = cache.withShown(rel(path), shown -> {
        if (shown.backingPath() == null) {
          return permissions.permits(shown, mask, caller()) ? 0 : -ErrorCodes.EACCES();
        }
        backing.access(shown.backingPath(), mask);
        return 0;
      });
      if (rc == null) {
        backing.access(rel(path), mask);
      }
      return rc != null ? rc : 0;
    });
  }

  @Override
  public int statfs(String path, Statvfs stbuf) {
    return guard(Op.STATFS, path, () -> {
      BackingStore.FsStats st = backing.statfs();
      stbuf.f_bsize.set(st.blockSize());
      stbuf.f_frsize.set(st.fragmentSize());
      stbuf.f_blocks.set(st.blocks());
      stbuf.f_bfree.set(st.blocksFree());
      stbuf.f_bavail.set(st.blocksAvailable());
      stbuf.f_files.set(st.files());
      stbuf.f_ffree.set(st.filesFree());
      stbuf.f_favail.set(st.filesAvailable());
      stbuf.f_fsid.set(st.fsid());
      stbuf.f_flag.set(st.flags());
      stbuf.f_namemax.set(st.nameMax());
      return 0;
    });
  }

  // ---- namespace ----------------------------------------------------------------------------

  @Override
  public int readdir(String path, Pointer buf, FuseFillDir filter, @off_t long offset,
      FuseFileInfo fi) {
    if (path == null) {
      return -ErrorCodes.ENOENT(); // a directory removed while open lists nothing more
    }
    return guard(Op.READDIR, path, () -> {
      filter.apply(buf, ".", null, 0);
      filter.apply(buf, "..", null, 0);
      boolean root = path.equals("/");
      // Names the journal changed and writeback has not applied yet: the overlay's say.
      Map<String, WriteCache.Shown> overlay = cache.overlayChildren(rel(path));
      boolean[] full = {false};
      backing.list(rel(path), name -> {
        if ((root && name.equals(BackingClaim.DIR)) || overlay.containsKey(name)) {
          return true;
        }
        full[0] = filter.apply(buf, name, null, 0) != 0;
        return !full[0];
      });
      for (Map.Entry<String, WriteCache.Shown> e : overlay.entrySet()) {
        if (!full[0] && e.getValue() != null) {
          full[0] = filter.apply(buf, e.getKey(), null, 0) != 0;
        }
      }
      return 0;
    });
  }

  @Override
  public int mkdir(String path, @mode_t long mode) {
    return guard(Op.MKDIR, path, () -> {
      cache.mkdir(rel(path), (int) mode); // not journaled: after the records on this name
      settleNew(path, mode, true);
      return 0;
    });
  }

  @Override
  public int rmdir(String path) {
    return guard(Op.RMDIR, path, () -> {
      cache.rmdir(rel(path)); // after the records on names in it
      return 0;
    });
  }

  @Override
  public int unlink(String path) {
    return guard(Op.UNLINK, path, () -> {
      cache.unlink(rel(path));
      return 0;
    });
  }

  @Override
  public int rename(String oldpath, String newpath) {
    if (OperationGuard.reserved(newpath)) {
      return -ErrorCodes.EPERM();
    }
    return guard(Op.RENAME, oldpath, () -> {
      cache.rename(rel(oldpath), rel(newpath));
      return 0;
    });
  }

  @Override
  public int link(String oldpath, String newpath) {
    if (OperationGuard.reserved(newpath)) {
      return -ErrorCodes.EPERM();
    }
    return guard(Op.LINK, oldpath, () -> {
      cache.link(rel(oldpath), rel(newpath)); // not journaled: after the records on them
      return 0;
    });
  }

  @Override
  public int symlink(String oldpath, String newpath) {
    return guard(Op.SYMLINK, newpath, () -> {
      cache.symlink(oldpath, rel(newpath));
      settleNew(newpath, FileStat.S_IFLNK | 0777, false); // owner only: its mode is always 0777
      return 0;
    });
  }

  @Override
  public int readlink(String path, Pointer buf, @size_t long size) {
    return guard(Op.READLINK, path, () -> {
      if (cache.shown(rel(path)) != null) {
        return -ErrorCodes.EINVAL(); // a regular file the journal created or moved
      }
      // Cut to the buffer and NUL-terminated, as readlink(2) into it would be for FUSE.
      byte[] target = backing.readlink(rel(path));
      int n = (int) Math.max(0, Math.min(target.length, size - 1));
      buf.put(0, target, 0, n);
      buf.putByte(n, (byte) 0);
      return 0;
    });
  }

  @Override
  public int mknod(String path, @mode_t long mode, long rdev) {
    return guard(Op.MKNOD, path, () -> {
      cache.mknod(rel(path), (int) mode, rdev);
      settleNew(path, mode, false);
      return 0;
    });
  }

  /**
   * A node just made: its creator's owner and mode ({@link PermissionRules#settleNew}), then
   * its directory marked once more, so that the next commit's fsync of it comes after them,
   * whatever commit ran since the engine made the node.
   */
  private void settleNew(String path, long mode, boolean directory) {
    permissions.settleNew(path, mode, directory, caller());
    cache.namespaceChanged(rel(path));
  }

  /** A utimens time as the kernel sent it (UTIME_NOW and UTIME_OMIT included). */
  private static BackingStore.TimeSpec timeSpec(Timespec t) {
    return new BackingStore.TimeSpec(t.tv_sec.get(), t.tv_nsec.longValue());
  }

  // ---- files --------------------------------------------------------------------------------

  @Override
  public int create(String path, @mode_t long mode, FuseFileInfo fi) {
    return guard(Op.CREATE, path, () -> {
      int flags = fi.flags.get();
      // The caller's file, with the mode the kernel sent (the creator's umask applied), made
      // in the namespace journal: the backing directory gets it when writeback applies it.
      PermissionRules.Caller caller = caller();
      int uid = permissions.ownerOf(caller);
      int gid = caller.gid();
      WriteCache.OpenFile file = cache.create(rel(path), (int) mode & 07777, uid, gid,
          (flags & O_EXCL) != 0);
      return openHandle(path, fi, file);
    });
  }

  @Override
  public int open(String path, FuseFileInfo fi) {
    return guard(Op.OPEN, path, () -> openHandle(path, fi));
  }

  private int openHandle(String path, FuseFileInfo fi) throws IOException {
    return openHandle(path, fi, cache.open(rel(path)));
  }

  private int openHandle(String path, FuseFileInfo fi, WriteCache.OpenFile file)
      throws IOException {
    int flags = fi.flags.get();
    boolean writable = (flags & O_ACCMODE) != LibC.O_RDONLY;
    boolean sync = writable && ((flags & O_DSYNC) != 0 || (flags & O_SYNC) == O_SYNC);
    boolean setId = false;
    if (writable) { // one stat per open spares one per write
      try {
        setId = (attributes.mode(path) & (S_ISUID | S_ISGID)) != 0;
      } catch (IOException e) {
        cache.close(file);
        throw e;
      }
    }
    fi.fh.set(openFiles.add(file, FuseWorker.currentNodeId(), sync, setId));
    return 0;
  }

  /**
   * Before a write through {@code h}: clears set-ID bits if the file may have them. The flag
   * drops before the check, so a chmod that sets the bits meanwhile raises it again and the
   * next write checks once more; a file that keeps a bit (set-group-ID without group-exec,
   * written by a group member) keeps the flag.
   */
  private void checkSetIdBits(OpenFiles.Handle h, String path) throws IOException {
    if (!h.mayHaveSetId || path == null) { // null: no name left, nobody can execute it by one
      return;
    }
    h.mayHaveSetId = false;
    boolean mayRemain = true;
    try {
      mayRemain = permissions.clearSetIdBits(path, h.file.ino(), caller());
    } finally {
      if (mayRemain) {
        h.mayHaveSetId = true;
      }
    }
  }

  /** A write or truncate removes a file capability (a file without a name left has none). */
  private void dropCapability(String path) throws IOException {
    if (path != null) {
      xattrs.dropCapability(rel(path), FuseWorker.currentNodeId());
    }
  }

  private OpenFiles.Handle handle(FuseFileInfo fi) throws IOException {
    return openFiles.require(fi.fh.get());
  }

  @Override
  public int read(String path, Pointer buf, @size_t long size, @off_t long offset,
      FuseFileInfo fi) {
    return guard(Op.READ, path, () ->
        cache.read(handle(fi).file, offset, buf.address(), (int) size));
  }

  @Override
  public int write(String path, Pointer buf, @size_t long size, @off_t long offset,
      FuseFileInfo fi) {
    return guard(Op.WRITE, path, () -> {
      OpenFiles.Handle h = handle(fi);
      checkSetIdBits(h, path);
      dropCapability(path);
      return write(h, offset, buf.address(), (int) size);
    });
  }

  /** A write through {@code h} (set-ID bits and capability seen to); O_SYNC commits it. */
  private int write(OpenFiles.Handle h, long offset, long data, int size) throws IOException {
    largestWrite.accumulate(size);
    cache.write(h.file, offset, data, size);
    if (h.sync) {
      commitForCaller(); // O_SYNC / O_DSYNC: durable before the write returns
    }
    return size;
  }

  /**
   * The data path by handle and node, for {@link DataRequests}: the same as read, write and
   * fsync above, minus what needs a path, which is declined (the first write to a file, that
   * must learn whether a capability is to be removed, and every write to one that may carry
   * set-ID bits).
   */
  private final class DataHandler implements DataRequests.Handler {
    private static final String BY_HANDLE = "(by handle)";

    @Override
    public int write(long fh, long node, long offset, long data, int size) {
      OpenFiles.Handle h = openFiles.get(fh);
      if (h == null || h.mayHaveSetId || !xattrs.capabilityKnownAbsent(node)) {
        return DECLINE;
      }
      return guard(Op.WRITE, BY_HANDLE, () -> WcfsFileSystem.this.write(h, offset, data, size));
    }

    @Override
    public int read(long fh, long offset, long dst, int size) {
      OpenFiles.Handle h = openFiles.get(fh);
      return h == null ? DECLINE
          : guard(Op.READ, BY_HANDLE, () -> cache.read(h.file, offset, dst, size));
    }

    /** fsync and fsyncdir: one commit either way. */
    @Override
    public int fsync(long fh) {
      return guard(Op.FSYNC, BY_HANDLE, () -> {
        commitForCaller();
        return 0;
      });
    }

    @Override
    public int probeCapability(long node) {
      return xattrs.probeFromMemory(node) ? -ErrorCodes.ENODATA() : DECLINE;
    }
  }

  @Override
  public int release(String path, FuseFileInfo fi) {
    return guard(Op.RELEASE, path, () -> {
      OpenFiles.Handle h = openFiles.remove(fi.fh.get());
      if (h != null) {
        cache.close(h.file);
      }
      return 0;
    });
  }

  @Override
  public int fsync(String path, int isdatasync, FuseFileInfo fi) {
    return guard(Op.FSYNC, path, () -> {
      commitForCaller();
      return 0;
    });
  }

  @Override
  public int fsyncdir(String path, FuseFileInfo fi) {
    return guard(Op.FSYNCDIR, path, () -> {
      // Names are records in the cache (or, for what is not journaled, fsync'd by the commit
      // with the directories it changed): fsync of a directory is the same one commit.
      commitForCaller();
      return 0;
    });
  }

  @Override
  public int truncate(String path, @off_t long size) {
    return guard(Op.TRUNCATE, path, () -> {
      permissions.clearSetIdBits(path, -1, caller()); // not a hot path: truncate by name checks every time
      xattrs.dropCapability(rel(path), FuseWorker.currentNodeId());
      cache.truncate(rel(path), size);
      return 0;
    });
  }

  @Override
  public int ftruncate(String path, @off_t long size, FuseFileInfo fi) {
    return guard(Op.FTRUNCATE, path, () -> {
      OpenFiles.Handle h = handle(fi);
      checkSetIdBits(h, path);
      dropCapability(path);
      cache.truncate(h.file, size);
      return 0;
    });
  }

  @Override
  public int fallocate(String path, int mode, @off_t long off, @off_t long length,
      FuseFileInfo fi) {
    return guard(Op.FALLOCATE, path, () -> {
      if (off < 0 || length <= 0) {
        return -ErrorCodes.EINVAL();
      }
      OpenFiles.Handle h = handle(fi);
      WriteCache.OpenFile f = h.file;
      if (mode == 0) {
        if (off + length > cache.size(f)) {
          cache.truncate(f, off + length); // the new range reads as zeros, as fallocate's does
        }
        return 0;
      }
      if (mode == FALLOC_FL_KEEP_SIZE) {
        // Preallocation without a size change changes nothing a reader sees; like mode 0, it
        // reserves nothing either: writes land in the cache, which makes writers wait when
        // full rather than fail. (RocksDB preallocates its files this way.)
        return 0;
      }
      // Punch hole and zero range: the range reads as zeros, ordered with the file's other
      // changes (WriteCache#zero). Collapse and insert range and unshare stay unsupported.
      boolean keepSize = (mode & FALLOC_FL_KEEP_SIZE) != 0;
      if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
        checkSetIdBits(h, path);
        cache.punchHole(f, off, length);
        return 0;
      }
      if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
        checkSetIdBits(h, path);
        cache.zeroRange(f, off, length, keepSize);
        return 0;
      }
      return -ErrorCodes.EOPNOTSUPP();
    });
  }

  // ---- extended attributes ------------------------------------------------------------------

  @Override
  public int getxattr(String path, String name, Pointer value, @size_t long size) {
    // A file not in the backing directory yet has none set.
    return xattrCall(Op.GETXATTR, path, true, -ErrorCodes.ENODATA(), () -> (int) xattrs.get(
        rel(path), FuseWorker.currentNodeId(), name, value == null ? 0 : value.address(), size));
  }

  @Override
  public int setxattr(String path, String name, Pointer value, @size_t long size, int flags) {
    return xattrCall(Op.SETXATTR, path, false, 0, () -> xattrs.set(rel(path), name,
        value == null ? 0 : value.address(), size, flags));
  }

  @Override
  public int listxattr(String path, Pointer list, @size_t long size) {
    return xattrCall(Op.LISTXATTR, path, true, 0, () -> (int) xattrs.list(rel(path),
        list == null ? 0 : list.address(), size));
  }

  @Override
  public int removexattr(String path, String name) {
    return xattrCall(Op.REMOVEXATTR, path, false, 0, () -> xattrs.remove(rel(path), name));
  }

  /**
   * An extended-attribute call: ENOSYS for every name when they are off (-o noxattr: the
   * kernel then stops asking, the security.capability probes before writes included), else
   * {@code absent} for a name only the journal holds yet when {@code reading}, else the call.
   */
  private int xattrCall(Op op, String path, boolean reading, int absent, IoCall call) {
    return guard(op, path, () -> {
      if (!xattrs.enabled()) {
        return -ENOSYS;
      }
      return settleXattrs(path, reading) ? absent : call.run();
    });
  }

  /**
   * Extended attributes live on the backing file: for a name whose state the journal still
   * holds, a file not created there yet has none (returns true when only {@code reading}),
   * and otherwise the pending records on it are applied first (returns false).
   */
  private boolean settleXattrs(String path, boolean reading) throws IOException {
    WriteCache.Shown shown = cache.shown(rel(path));
    if (shown == null) {
      return false;
    }
    if (shown.backingPath() == null && reading) {
      return true;
    }
    cache.settle(rel(path));
    return false;
  }
}
