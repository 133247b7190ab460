package io.wcfs.fs;

import io.wcfs.core.WriteCache;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import ru.serce.jnrfuse.struct.FileStat;

/**
 * What a local filesystem does to owners and modes that the backing directory, written by a
 * daemon that may run as root with its own umask, does not do by itself: a new node belongs
 * to its creator with the mode the kernel asked for, a write by another user clears set-ID
 * bits, and access(2) is answered by the mode for files not in the backing directory yet.
 */
final class PermissionRules {
  private static final Logger LOG = LoggerFactory.getLogger(PermissionRules.class);
  private static final int S_ISUID = 04000;
  private static final int S_ISGID = 02000;
  private static final int S_IXGRP = 00010;

  /** Who made a request: the FUSE context's uid, gid and pid. */
  record Caller(int uid, int gid, int pid) {}

  private final WriteCache cache;
  /** Reads the backing nodes' modes; changes go through {@link #cache}. */
  private final ShownAttributes attributes;
  private final long rootDev;
  private final int ownUid = LibC.geteuid();
  /**
   * This process's umask, which the backing filesystem applies to what we create. The kernel
   * already applied the creator's umask to the mode it sends; ours must not take more away.
   */
  private final int ownUmask = ownUmask();

  PermissionRules(WriteCache cache, ShownAttributes attributes) {
    this.cache = cache;
    this.attributes = attributes;
    this.rootDev = attributes.rootDev();
  }

  /** The owner a file created through the mount gets: the caller's, if we may give it. */
  int ownerOf(Caller caller) {
    return ownUid == 0 ? caller.uid() : ownUid;
  }

  /** The Umask line of /proc/self/status: reading it does not change it, as umask(2) would. */
  private static int ownUmask() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("Umask:")) {
          return Integer.parseInt(line.substring(6).trim(), 8);
        }
      }
    } catch (IOException | NumberFormatException e) {
      LOG.warn("cannot read this process's umask ({}); new files get their modes set after"
          + " creation", e.toString());
    }
    return 07777;
  }

  /**
   * Makes a node just created at {@code path} (below the mount) the caller's, with the mode the
   * kernel asked for. New nodes belong to the caller, not to the daemon (which may run as
   * root). The mode the kernel sends is already masked with the creator's umask; the backing
   * filesystem then masked it with ours too, and chown cleared set-ID bits, so both are put
   * back when they differ. Best effort, as a failure cannot undo the node: errors are ignored.
   */
  void settleNew(String path, long mode, boolean directory, Caller caller) {
    String rel = WcfsFileSystem.rel(path);
    int uid = caller.uid();
    int gid = caller.gid();
    boolean chowned = false;
    if (ownUid == 0 && (uid != 0 || gid != 0)) {
      try {
        cache.chown(rel, uid, gid);
        chowned = true;
      } catch (IOException e) {
        // left the daemon's, as it was made
      }
    }
    if (((int) mode & FileStat.S_IFMT) == FileStat.S_IFLNK) {
      // A symlink's own mode is always 0777 and chmod(2) follows it: it would change the
      // target's mode, wherever that is (an absolute target leaves the backing directory).
      return;
    }
    int perm = (int) mode & 07777;
    if ((perm & ownUmask) != 0 || (chowned && (perm & (S_ISUID | S_ISGID)) != 0)) {
      try {
        int keep = 0;
        if (directory) { // a set-group-ID parent passed its bit on; chmod must not take it away
          keep = attributes.backingStatus(path).mode() & S_ISGID;
        }
        cache.chmod(rel, perm | keep);
      } catch (IOException e) {
        // gone already (a concurrent rmdir), or the mode stays as the backing filesystem made it
      }
    }
  }

  /**
   * A write or truncate by a user other than root clears S_ISUID, and S_ISGID where group-exec
   * is set or the writer is outside the file's group, as the kernel does for a local filesystem
   * (should_remove_suid). Through FUSE the kernel does it only from its cached copy of the mode,
   * which can be stale (set through another name), and never for the group rule; the backing
   * filesystem never does, since the daemon writing there is root. Returns whether set-ID bits
   * may remain on the file.
   */
  boolean clearSetIdBits(String path, long ino, Caller ctx) throws IOException {
    // With kill-priv v2 the kernel says whether the caller lacks CAP_FSETID; without it, root
    // is taken to have it.
    boolean mustClear = FuseLoop.killPrivV2() ? FuseWorker.killSuidGidRequested()
        : ctx.uid() != 0;
    if (!mustClear) {
      return true; // the caller may keep them (CAP_FSETID); the next writer may not
    }
    LibC.FileStatus st;
    WriteCache.Shown shown;
    try {
      shown = cache.shown(WcfsFileSystem.rel(path));
      st = shown != null && shown.backingPath() == null
          ? new LibC.FileStatus(rootDev, shown.ino(), 1, FileStat.S_IFREG | shown.mode(),
              shown.uid(), shown.gid(), shown.size(), 0, 0)
          : attributes.backingStatus(shown == null ? path : "/" + shown.backingPath());
    } catch (NativeIOException | NoSuchFileException e) {
      return false; // no name left (unlinked while open): nobody can execute it by name either
    }
    if (ino >= 0 && st.ino() != ino) {
      return true; // the name now belongs to another file: ours was not checked
    }
    int mode = st.mode() & 07777;
    int kill = mode & S_ISUID;
    if ((mode & S_ISGID) != 0 && ((mode & S_IXGRP) != 0
        || !inGroup(ctx.gid(), ctx.pid(), st.gid()))) {
      kill |= S_ISGID;
    }
    if (kill != 0) {
      if (!cache.setAttributes(WcfsFileSystem.rel(path), mode & ~kill, null, null, null, null)) {
        cache.chmod(WcfsFileSystem.rel(path), mode & ~kill); // after the records on it
      }
      // A write's reply carries no attributes: the kernel would show the old mode until its
      // copy times out.
      FuseWorker.invalidateAttributesAfterReply();
    }
    return (mode & ~kill & (S_ISUID | S_ISGID)) != 0;
  }

  /** Whether the caller (fsgid {@code gid}, process {@code pid}) is a member of {@code fileGid}. */
  private static boolean inGroup(int gid, int pid, int fileGid) {
    if (gid == fileGid) {
      return true;
    }
    try {
      for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
        if (line.startsWith("Groups:")) {
          for (String g : line.substring(7).trim().split("\\s+")) {
            if (!g.isEmpty() && Integer.parseInt(g) == fileGid) {
              return true;
            }
          }
        }
      }
    } catch (IOException | NumberFormatException e) {
      // the caller is gone or unreadable: treat it as outside the group, the safe side
    }
    return false;
  }

  /** access(2)'s rule for a file the backing directory does not have yet. */
  boolean permits(WriteCache.Shown f, int mask, Caller ctx) {
    int uid = ctx.uid();
    int want = mask & 7;
    if (uid == 0) {
      return (want & 1) == 0 || (f.mode() & 0111) != 0; // root: execute needs some x bit
    }
    int bits = uid == f.uid() ? (f.mode() >> 6) & 7
        : inGroup(ctx.gid(), ctx.pid(), f.gid()) ? (f.mode() >> 3) & 7
        : f.mode() & 7;
    return (bits & want) == want;
  }
}
