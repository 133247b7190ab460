package io.wcfs.core;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;

/**
 * Which boot of the machine this is (Linux's random boot_id, folded to 64 bits). A cache
 * recovered in the boot it was mounted in lost only its daemon, not the machine's memory:
 * every store the daemon made into the mapping is still there, flushed or not.
 */
final class BootId {
  private BootId() {}

  /** The current boot, or 0 when it cannot be read (then no recovery counts as same-boot). */
  static long current() {
    try {
      String id = Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim();
      UUID u = UUID.fromString(id);
      long v = u.getMostSignificantBits() ^ u.getLeastSignificantBits();
      return v == 0 ? 1 : v;
    } catch (IOException | IllegalArgumentException e) {
      return 0;
    }
  }
}
