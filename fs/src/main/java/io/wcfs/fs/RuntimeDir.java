package io.wcfs.fs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * Where running mounts can be found: one control socket per mount point, in a directory only
 * the owner can enter ({@code /run/wcfs} for root, else {@code $XDG_RUNTIME_DIR/wcfs} or
 * {@code /tmp/wcfs-UID}).
 */
final class RuntimeDir {
  private RuntimeDir() {}

  static Path dir() throws IOException {
    Path dir;
    String override = System.getenv("WCFS_RUNTIME_DIR");
    if (override != null) {
      dir = Path.of(override);
    } else if (io.wcfs.nativ.LibC.geteuid() == 0) {
      dir = Path.of("/run/wcfs");
    } else if (System.getenv("XDG_RUNTIME_DIR") != null) {
      dir = Path.of(System.getenv("XDG_RUNTIME_DIR"), "wcfs");
    } else {
      dir = Path.of("/tmp", "wcfs-" + io.wcfs.nativ.LibC.geteuid());
    }
    if (!Files.isDirectory(dir)) {
      Files.createDirectories(dir);
    }
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
    return dir;
  }

  private static String key(Path p) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-256")
          .digest(p.toString().getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(d, 0, 10);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The control socket of the mount at {@code mountpoint} (an absolute, real path). */
  static Path socketFor(Path mountpoint) throws IOException {
    return dir().resolve("mnt-" + key(mountpoint) + ".sock");
  }

  /** The file naming the mount that holds {@code cacheFile} (a real path). */
  static Path ownerFileFor(Path cacheFile) throws IOException {
    return dir().resolve("cache-" + key(cacheFile) + ".owner");
  }
}
