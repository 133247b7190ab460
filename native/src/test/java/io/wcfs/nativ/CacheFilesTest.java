package io.wcfs.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * How a new cache file is preallocated: by writing zeros on a disk (fallocate leaves unwritten
 * extents, and the first write into each one costs the cache's filesystem a journal commit on
 * the commit path), with fallocate where it is right (tmpfs, DAX).
 */
class CacheFilesTest {
  /** On the build's own filesystem (a disk where tests run), not on a tmpfs /tmp. */
  @TempDir(cleanup = org.junit.jupiter.api.io.CleanupMode.ALWAYS)
  Path tmp;

  private static String filefrag(Path f) throws Exception {
    Process p = new ProcessBuilder("filefrag", "-v", f.toString()).redirectErrorStream(true)
        .start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(30, TimeUnit.SECONDS));
    Assumptions.assumeTrue(p.exitValue() == 0, "filefrag cannot map " + f + ": " + out);
    return out;
  }

  private static boolean onTmpfs(Path dir) throws IOException {
    String type = Files.getFileStore(dir).type();
    return type.equals("tmpfs") || type.equals("ramfs");
  }

  @Test
  @DisplayName("a cache file on a disk has no unwritten extents: its blocks were written")
  void diskCacheIsWritten() throws Exception {
    Assumptions.assumeFalse(onTmpfs(tmp), tmp + " is on tmpfs; this test needs a disk");
    Path f = tmp.resolve("cache");
    long size = (24L << 20) + 512; // a tail that O_DIRECT cannot write
    List<Long> seen = new ArrayList<>();
    assertEquals(CacheFiles.Preallocation.ZEROS, CacheFiles.create(f, size, 4096,
        (done, total) -> {
          assertEquals(size, total);
          seen.add(done);
        }));
    assertEquals(size, Files.size(f));
    String map = filefrag(f);
    assertFalse(map.contains("unwritten"), "extents left unwritten (fallocate):\n" + map);
    assertTrue(java.util.Arrays.equals(new byte[(int) size], Files.readAllBytes(f)));
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
    assertTrue(seen.size() >= 3, "progress after each 8 MiB: " + seen);
    for (int i = 1; i < seen.size(); i++) {
      assertTrue(seen.get(i) > seen.get(i - 1), "progress only grows: " + seen);
    }
    assertEquals(size, seen.get(seen.size() - 1));
  }

  @Test
  @DisplayName("on tmpfs fallocate is kept: nothing behind it to journal, and it is fast")
  void tmpfsKeepsFallocate() throws Exception {
    Path dir = Files.createTempDirectory(Path.of("/dev/shm"), "wcfs-cachefiles");
    try {
      assertEquals(CacheFiles.Preallocation.FALLOCATE, CacheFiles.preallocationFor(dir));
      Path f = dir.resolve("cache");
      assertEquals(CacheFiles.Preallocation.FALLOCATE, CacheFiles.create(f, 8 << 20, 4096));
      Process stat = new ProcessBuilder("stat", "-c", "%b", f.toString()).start();
      long allocated = Long.parseLong(new String(stat.getInputStream().readAllBytes()).trim())
          * 512L;
      assertTrue(allocated >= 8 << 20, "preallocated, not sparse: " + allocated);
    } finally {
      Files.deleteIfExists(dir.resolve("cache"));
      Files.delete(dir);
    }
  }

  @Test
  @DisplayName("a filesystem mounted with dax (or dax=always) is preallocated with fallocate")
  void daxMountsKeepFallocate() {
    List<String> mountinfo = List.of(
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        "40 22 259:1 / /mnt/pmem rw,relatime shared:20 - ext4 /dev/pmem0 rw,dax=always",
        "41 22 259:2 / /mnt/pmem-old rw,relatime shared:21 - xfs /dev/pmem1 rw,attr2,dax",
        "42 22 259:3 / /mnt/inode rw,relatime shared:22 - xfs /dev/pmem2 rw,dax=inode",
        "43 40 254:1 / /mnt/pmem/disk rw,relatime shared:23 - ext4 /dev/vdb rw");
    assertTrue(CacheFiles.isDax(Path.of("/mnt/pmem/cache"), mountinfo));
    assertTrue(CacheFiles.isDax(Path.of("/mnt/pmem-old"), mountinfo));
    assertFalse(CacheFiles.isDax(Path.of("/mnt/inode/c"), mountinfo), "dax=inode: per file");
    assertFalse(CacheFiles.isDax(Path.of("/mnt/pmem/disk/c"), mountinfo), "a disk mounted below");
    assertFalse(CacheFiles.isDax(Path.of("/mnt/pmemx"), mountinfo), "a name that only starts"
        + " alike");
    assertFalse(CacheFiles.isDax(Path.of("/var/cache"), mountinfo));
  }
}
