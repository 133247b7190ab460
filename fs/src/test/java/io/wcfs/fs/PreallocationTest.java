package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A cache file on a disk is preallocated by writing zeros (no unwritten extents left for the
 * commit path to convert), and a preallocation that takes a while shows its progress: `wcfs
 * format` on its terminal, `wcfs mount` through the daemon it starts.
 */
@Timeout(300)
class PreallocationTest {
  /** Under the build's directory, on a disk where tests run (not the tmpfs /dev/shm). */
  @TempDir Path tmp;

  /** Progress every chunk, not every second: the caches here are small. */
  private static final Map<String, String> EVERY_CHUNK = Map.of("WCFS_PROGRESS_INTERVAL_MS",
      "0");

  private static String filefrag(Path f) throws Exception {
    Process p = new ProcessBuilder("filefrag", "-v", f.toString()).redirectErrorStream(true)
        .start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(30, TimeUnit.SECONDS));
    Assumptions.assumeTrue(p.exitValue() == 0, "filefrag cannot map " + f + ": " + out);
    return out;
  }

  private void assumeDisk() throws Exception {
    String type = Files.getFileStore(tmp).type();
    Assumptions.assumeFalse(type.equals("tmpfs") || type.equals("ramfs"),
        tmp + " is on " + type + "; this test needs a disk");
  }

  @Test
  @DisplayName("wcfs format of a new cache on a disk writes zeros and shows its progress")
  void formatShowsProgress() throws Exception {
    assumeDisk();
    Path cache = Files.createDirectories(tmp.resolve("cache"));
    Path backing = Files.createDirectories(tmp.resolve("backing"));
    WcfsProcess.Result r = WcfsProcess.run(EVERY_CHUNK, 120, "format", "--cache-size", "64M",
        cache.toString(), backing.toString());
    assertEquals(0, r.exitCode(), r.all());
    assertTrue(r.err().contains("preallocating " + cache.resolve("wcfs.cache")
        + " (writing zeros): "), r.all());
    assertTrue(r.err().contains("(50%)"), r.all());
    assertTrue(r.err().contains("preallocated " + cache.resolve("wcfs.cache") + ": 0.1 GiB in"),
        r.all());
    String map = filefrag(cache.resolve("wcfs.cache"));
    // format writes the headers itself; what matters is that nothing is left unwritten
    assertFalse(map.contains("unwritten"), "extents left unwritten:\n" + map);
  }

  @Test
  @DisplayName("wcfs mount creating a cache on a disk relays the daemon's progress")
  void mountShowsProgress() throws Exception {
    assumeDisk();
    Path cache = Files.createDirectories(tmp.resolve("cache"));
    Path backing = Files.createDirectories(tmp.resolve("backing"));
    Path mnt = Files.createDirectories(tmp.resolve("m"));
    try (WcfsProcess w = new WcfsProcess(cache, backing, mnt)) {
      WcfsProcess.Result r = WcfsProcess.run(EVERY_CHUNK, 120, "mount", "--cache-size", "64M",
          cache.toString(), backing.toString(), mnt.toString());
      if (r.exitCode() == 0) {
        w.markMounted();
      }
      assertEquals(0, r.exitCode(), r.all() + w.log());
      assertTrue(r.err().contains("wcfs: preallocating " + cache.resolve("wcfs.cache")
          + " (writing zeros): "), r.all());
      assertTrue(r.out().contains("wcfs: mounted " + mnt.toRealPath()), r.all());
      assertFalse(filefrag(cache.resolve("wcfs.cache")).contains("unwritten"));
      Files.writeString(mnt.resolve("f"), "on a disk cache");
      w.umount();
      assertEquals("on a disk cache", Files.readString(backing.resolve("f")));
    }
  }
}
