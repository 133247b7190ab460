package io.wcfs.fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** What /proc/self/mountinfo says about mount points. */
final class Mounts {
  private Mounts() {}

  /** The filesystem type mounted exactly at {@code path}, or null. */
  static String typeAt(Path path) throws IOException {
    String target = path.toString();
    String type = null;
    List<String> lines = Files.readAllLines(Path.of("/proc/self/mountinfo"));
    for (String line : lines) {
      String[] f = line.split(" ");
      int dash = line.indexOf(" - ");
      if (f.length < 5 || dash < 0) {
        continue;
      }
      if (unescape(f[4]).equals(target)) {
        type = line.substring(dash + 3).split(" ")[0]; // the last mount on top wins
      }
    }
    return type;
  }

  static boolean isWcfs(Path path) throws IOException {
    return "fuse.wcfs".equals(typeAt(path));
  }

  private static String unescape(String s) {
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
        .replace("\\134", "\\");
  }

  /** Unmounts a FUSE mount (fusermount -u, lazily with -z when asked). */
  static void fusermountUnmount(Path path, boolean lazy) throws IOException {
    String tool = Files.isExecutable(Path.of("/bin/fusermount"))
        || Files.isExecutable(Path.of("/usr/bin/fusermount"))
        || Files.isExecutable(Path.of("/usr/local/bin/fusermount")) ? "fusermount" : "fusermount3";
    ProcessBuilder pb = lazy ? new ProcessBuilder(tool, "-u", "-z", path.toString())
        : new ProcessBuilder(tool, "-u", path.toString());
    pb.redirectErrorStream(true);
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes()).trim();
    try {
      if (p.waitFor() != 0) {
        throw new IOException(tool + " -u " + path + " failed: " + out);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while unmounting " + path);
    }
  }
}
