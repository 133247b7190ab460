package io.wcfs.fs;

import io.wcfs.nativ.LibC;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

/** Why libfuse could not mount: what it printed on standard error, and the fix. */
final class MountFailure {
  private MountFailure() {}

  /**
   * Why libfuse could not mount, in one sentence: what libfuse (or fusermount, which it runs
   * for users other than root) printed, and the fix for the reasons users meet.
   */
  static String explain(Path mountpoint, List<String> args, String said) {
    String reason = said.strip().replaceAll("\\s*\\R\\s*", "; ");
    String fix = "";
    if (said.contains("/dev/fuse") && (said.contains("Permission denied")
        || said.contains("Operation not permitted"))) {
      fix = "; this user (uid " + LibC.geteuid() + ") may not open /dev/fuse: let it (chmod"
          + " 0666 /dev/fuse, its usual mode, or add the user to the group owning it) or mount"
          + " as root";
    } else if (said.contains("allow_other") && said.contains("user_allow_other")) {
      fix = "; add the line user_allow_other to /etc/fuse.conf, or mount without allow_other";
    } else if (said.contains("unknown option")) {
      fix = "; check the -o options";
    } else if (said.contains("no write access to mountpoint")) {
      fix = "; mount on a directory this user owns";
    }
    return "libfuse could not mount " + mountpoint + ": "
        + (reason.isEmpty() ? "it gave no reason" : reason) + fix + " (FUSE options: "
        + String.join(" ", args) + ")";
  }

  /**
   * libfuse2 and fusermount say why a mount failed only on standard error (fd 2), which for a
   * daemon is its log: for the duration of fuse_setup fd 2 is a file of our own, and what
   * landed there is copied to the real stderr afterwards and returned for the error message.
   * Anything else written to stderr meanwhile is copied over too.
   */
  static final class StderrCapture implements AutoCloseable {
    private final Path file;
    private final int fd;
    private int saved = -1;

    StderrCapture() throws IOException {
      file = java.nio.file.Files.createTempFile("wcfs-fuse-setup", ".txt");
      try {
        fd = LibC.open(file.toString(), LibC.O_RDWR, 0);
      } finally {
        java.nio.file.Files.delete(file);
      }
      System.err.flush();
      saved = LibC.dup(2);
      LibC.dup2(fd, 2);
    }

    /** Puts the real stderr back; returns what was written meanwhile, also copied there. */
    String restore() throws IOException {
      if (saved < 0) {
        return "";
      }
      System.err.flush();
      LibC.dup2(saved, 2);
      LibC.close(saved);
      saved = -1;
      byte[] text = java.nio.file.Files.readAllBytes(Path.of("/proc/self/fd/" + fd));
      System.err.write(text, 0, text.length);
      System.err.flush();
      return new String(text, StandardCharsets.UTF_8);
    }

    @Override
    public void close() throws IOException {
      try {
        restore();
      } finally {
        LibC.close(fd);
      }
    }
  }
}
