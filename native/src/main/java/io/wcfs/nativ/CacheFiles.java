package io.wcfs.nativ;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Creating cache files: preallocated in full, mode 0600. */
public final class CacheFiles {
  private CacheFiles() {}

  /**
   * Creates {@code file} (which must not exist) with {@code size} bytes really allocated: a sparse
   * cache on a filesystem that later fills up would fault (SIGBUS) inside the mapping.
   *
   * @param minSize the smallest useful size (room for the headers and one block)
   */
  public static void create(Path file, long size, long minSize) throws IOException {
    if (size < minSize) {
      throw new IOException(
          "cache size " + size + " bytes is too small: it must hold the headers and at least one"
              + " block (" + minSize + " bytes); give a larger --cache-size");
    }
    Path dir = file.toAbsolutePath().getParent();
    long free = Files.getFileStore(dir).getUsableSpace();
    if (size > free) {
      throw new IOException(
          "cache size " + size + " bytes is larger than the free space on " + dir + " (" + free
              + " bytes); give a smaller --cache-size or free some space");
    }
    int fd = LibC.open(file.toString(), LibC.O_RDWR | LibC.O_CREAT | LibC.O_EXCL, 0600);
    boolean ok = false;
    try {
      LibC.fallocate(fd, 0, size);
      LibC.fsync(fd);
      ok = true;
    } finally {
      LibC.close(fd);
      if (!ok) {
        Files.deleteIfExists(file);
      }
    }
  }
}
