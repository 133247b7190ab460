package io.wcfs.fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/**
 * The filesystem a backing directory is on, from {@code /proc/self/mountinfo}, and whether its
 * locks can keep another machine out: a claim is only as good as the lock behind it.
 *
 * @param type the mount table's type ("ext4", "fuse.glusterfs", "nfs4", "fuse.sshfs")
 * @param mountPoint where that filesystem is mounted
 * @param options the mount's and the superblock's options, comma-separated
 */
record BackingFilesystem(String type, Path mountPoint, String options) {

  /** What a lock on this filesystem means. */
  enum Locking {
    /** A local filesystem: no other machine mounts it, and local locks are exact. */
    LOCAL,
    /** Locks are kept by the servers and span every client (GlusterFS, NFS, CephFS, SMB). */
    SHARED,
    /** Locks reach only this machine (sshfs, NFS with nolock) or wcfs cannot tell. */
    NONE
  }

  private static final Set<String> LOCAL = Set.of("ext2", "ext3", "ext4", "xfs", "btrfs",
      "tmpfs", "ramfs", "zfs", "f2fs", "bcachefs", "jfs", "reiserfs", "vfat", "msdos", "exfat",
      "ntfs", "ntfs3", "hfs", "hfsplus", "overlay", "nilfs2", "udf");
  private static final Set<String> SHARED = Set.of("fuse.glusterfs", "glusterfs", "nfs",
      "nfs4", "ceph", "fuse.ceph-fuse", "fuse.ceph", "cifs", "smb3", "gfs2", "ocfs2", "gpfs",
      "lustre");

  Locking locking() {
    if (LOCAL.contains(type)) {
      return Locking.LOCAL;
    }
    if (!SHARED.contains(type)) {
      return Locking.NONE;
    }
    List<String> opts = List.of(options.split(","));
    return switch (type) {
      // NFSv3 "nolock" shows as local_lock=all; local_lock=posix keeps fcntl locks local too.
      case "nfs", "nfs4" -> opts.contains("nolock") || opts.contains("local_lock=all")
          || opts.contains("local_lock=posix") ? Locking.NONE : Locking.SHARED;
      case "cifs", "smb3" -> opts.contains("nobrl") ? Locking.NONE : Locking.SHARED;
      // Lustre keeps fcntl locks cluster-wide only when mounted with "flock".
      case "lustre" -> opts.contains("flock") ? Locking.SHARED : Locking.NONE;
      default -> Locking.SHARED;
    };
  }

  /** The refusal for {@link Locking#NONE}, one sentence. */
  String noLocksMessage(Path backing) {
    boolean known = type.equals("fuse.sshfs") || SHARED.contains(type);
    return "backing directory " + backing + " is on " + type + " (mounted at " + mountPoint + "),"
        + (known ? " whose locks do not reach other machines"
            : " and wcfs does not know that its locks reach other machines")
        + ", so wcfs cannot stop a second machine from mounting it too, and two caches writing"
        + " back into one directory corrupt each other's files: if this machine is the only one"
        + " that ever writes there, mount with --single-machine";
  }

  /** The filesystem holding {@code dir} (a real path): the longest mount point above it. */
  static BackingFilesystem of(Path dir) throws IOException {
    BackingFilesystem best = null;
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      // id parent maj:min root mountpoint mountopts [optional...] - fstype source superopts
      String[] f = line.split(" ");
      int dash = List.of(f).indexOf("-");
      if (f.length < 6 || dash < 0 || dash + 1 >= f.length) {
        continue;
      }
      Path mp = Path.of(unescape(f[4]));
      if (!dir.startsWith(mp)) {
        continue;
      }
      String superOpts = dash + 3 < f.length ? f[dash + 3] : "";
      // A later line over the same or a longer mount point hides the earlier one.
      if (best == null || mp.getNameCount() >= best.mountPoint.getNameCount()) {
        best = new BackingFilesystem(f[dash + 1], mp, f[5] + "," + superOpts);
      }
    }
    return best != null ? best : new BackingFilesystem("unknown", Path.of("/"), "");
  }

  /** mountinfo escapes space, tab, newline and backslash as \ooo. */
  private static String unescape(String s) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' && i + 3 < s.length()) {
        try {
          sb.append((char) Integer.parseInt(s.substring(i + 1, i + 4), 8));
          i += 3;
          continue;
        } catch (NumberFormatException e) {
          // not an escape
        }
      }
      sb.append(c);
    }
    return sb.toString();
  }
}
