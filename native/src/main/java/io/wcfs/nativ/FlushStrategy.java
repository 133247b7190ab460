package io.wcfs.nativ;

import java.util.Locale;

/**
 * How the three-step persistence API (copy, flush, commit) maps onto the machine; the choice the
 * dm-devel thread in DESIGN.md's seed settles:
 *
 * <pre>
 *             pmem_memcpy          pmem_flush(range)        pmem_commit
 *   EAGER     non-temporal stores  nothing                  drain (sfence)
 *   LATE      cached stores        flush cache lines        drain
 *   MSYNC     pwrite into the      note the pages           sync_file_range per merged range,
 *             file's pages                                  one fdatasync of the cache file
 * </pre>
 *
 * EAGER wins on x86-64, where movnt bypasses the cache; arm64 has no non-temporal stores, and
 * flushing as late as possible (LATE) lets the CPU write a line back once however often it was
 * stored to. MSYNC is the only correct choice for a mapping that is not persistent memory; its
 * name is kept for the command line, though a commit no longer calls msync (see PageCacheSync).
 */
public enum FlushStrategy {
  AUTO,
  EAGER,
  LATE,
  MSYNC;

  public static FlushStrategy parse(String text) {
    try {
      return valueOf(text.trim().toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "unknown flush strategy '" + text + "': use auto, eager, late or msync");
    }
  }

  /** What AUTO means on this machine for a mapping that is, or is not, persistent memory. */
  public static FlushStrategy autoFor(boolean isPmem, String osArch) {
    if (!isPmem) {
      return MSYNC;
    }
    return osArch.equals("amd64") || osArch.equals("x86_64") ? EAGER : LATE;
  }

  @Override
  public String toString() {
    return name().toLowerCase(Locale.ROOT);
  }
}
