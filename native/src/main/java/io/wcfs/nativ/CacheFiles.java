package io.wcfs.nativ;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** Creating cache files: preallocated in full, mode 0600. */
public final class CacheFiles {
  /** Zeros are written in pieces of this size; progress is reported after each. */
  private static final int CHUNK = 8 << 20;
  /** Dirty page cache is bounded by waiting for each this much written (buffered writes only). */
  private static final long SYNC_EVERY = 256L << 20;
  private static final int SYNC_FILE_RANGE_WAIT_BEFORE = 1;
  private static final int SYNC_FILE_RANGE_WRITE = 2;
  private static final int SYNC_FILE_RANGE_WAIT_AFTER = 4;
  private static final long DIRECT_ALIGN = 4096;

  private CacheFiles() {}

  /** How a cache file's space is reserved. */
  public enum Preallocation {
    /**
     * fallocate: right where there is no disk behind the file (tmpfs, ramfs, hugetlbfs) or
     * where the file is memory (a DAX filesystem: the mapping reaches the media directly and
     * the filesystem zeroes the extents it hands out).
     */
    FALLOCATE,
    /**
     * Writing zeros: on a disk, fallocate leaves unwritten extents, and the first write into
     * each one converts it, which costs the cache's filesystem a journal commit on wcfs's
     * commit path. Written blocks cost nothing more later.
     */
    ZEROS
  }

  /** Told how far preallocation got: {@code done} of {@code total} bytes. */
  @FunctionalInterface
  public interface Progress {
    Progress NONE = (done, total) -> { };

    void update(long done, long total);
  }

  /**
   * Creates {@code file} (which must not exist) with {@code size} bytes really allocated: a sparse
   * cache on a filesystem that later fills up would fault (SIGBUS) inside the mapping.
   *
   * @param minSize the smallest useful size (room for the headers and one block)
   */
  public static Preallocation create(Path file, long size, long minSize) throws IOException {
    return create(file, size, minSize, Progress.NONE);
  }

  /** As {@link #create(Path, long, long)}, telling {@code progress} how far it got. */
  public static Preallocation create(Path file, long size, long minSize, Progress progress)
      throws IOException {
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
    Preallocation how = preallocationFor(dir);
    int fd = LibC.open(file.toString(), LibC.O_RDWR | LibC.O_CREAT | LibC.O_EXCL, 0600);
    boolean ok = false;
    try {
      if (how == Preallocation.FALLOCATE) {
        LibC.fallocate(fd, 0, size);
        progress.update(size, size);
      } else {
        writeZeros(fd, file, size, progress);
      }
      LibC.fsync(fd);
      ok = true;
    } finally {
      LibC.close(fd);
      if (!ok) {
        Files.deleteIfExists(file);
      }
    }
    return how;
  }

  /**
   * Writes {@code size} zero bytes from offset 0: with O_DIRECT where the filesystem takes it
   * (the page cache is not filled with zeros the mapping does not need), else buffered, waiting
   * for each {@link #SYNC_EVERY} bytes so that dirty pages stay bounded.
   */
  private static void writeZeros(int fd, Path file, long size, Progress progress)
      throws IOException {
    int direct = -1;
    try {
      direct = LibC.open("/proc/self/fd/" + fd, LibC.O_WRONLY | LibC.O_DIRECT, 0);
    } catch (NativeIOException e) {
      // EINVAL: no O_DIRECT on this filesystem; buffered writes below
    }
    try (NativeBuffer zeros = new NativeBuffer(CHUNK, (int) DIRECT_ALIGN)) {
      NativeBuffer.zero(zeros.address(), CHUNK);
      long done = 0;
      long synced = 0;
      while (done < size) {
        long n = Math.min(CHUNK, size - done);
        boolean aligned = (n & (DIRECT_ALIGN - 1)) == 0;
        if (direct >= 0 && aligned) {
          try {
            LibC.pwrite(direct, zeros.address(), n, done);
          } catch (NativeIOException e) {
            if (e.errno() != 22) { // EINVAL: the alignment is refused after all
              throw e;
            }
            LibC.close(direct);
            direct = -1;
            LibC.pwrite(fd, zeros.address(), n, done);
          }
        } else {
          LibC.pwrite(fd, zeros.address(), n, done);
        }
        done += n;
        if (done - synced >= SYNC_EVERY || done == size) {
          int rc = LibC.syncFileRange(fd, synced, done - synced, SYNC_FILE_RANGE_WAIT_BEFORE
              | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
          if (rc < 0) {
            throw new NativeIOException("writing zeros into " + file + " failed: "
                + LibC.strerror(-rc), -rc);
          }
          synced = done;
        }
        progress.update(done, size);
      }
    } finally {
      if (direct >= 0) {
        LibC.close(direct);
      }
    }
  }

  /**
   * How a cache file in {@code dir} is preallocated: fallocate on tmpfs, ramfs, hugetlbfs and
   * on filesystems mounted with DAX; zeros on everything else.
   */
  public static Preallocation preallocationFor(Path dir) throws IOException {
    String type = Files.getFileStore(dir).type();
    if (type.equals("tmpfs") || type.equals("ramfs") || type.equals("hugetlbfs")) {
      return Preallocation.FALLOCATE;
    }
    return isDax(dir.toRealPath()) ? Preallocation.FALLOCATE : Preallocation.ZEROS;
  }

  /**
   * Whether the mount holding {@code dir} maps files straight to persistent memory: its
   * options in /proc/self/mountinfo say {@code dax} or {@code dax=always} ({@code dax=inode}
   * leaves it to each file's flag: not assumed).
   */
  static boolean isDax(Path dir) throws IOException {
    return isDax(dir, Files.readAllLines(Path.of("/proc/self/mountinfo")));
  }

  /** {@link #isDax(Path)} over the given lines of mountinfo. */
  static boolean isDax(Path dir, List<String> lines) {
    String best = null;
    String bestOptions = "";
    for (String line : lines) {
      String[] f = line.split(" ");
      int dash = line.indexOf(" - ");
      if (f.length < 6 || dash < 0) {
        continue;
      }
      String mp = unescape(f[4]);
      if (!dir.startsWith(mp) || (best != null && mp.length() < best.length())) {
        continue;
      }
      String[] tail = line.substring(dash + 3).split(" ");
      best = mp; // the last mount at the longest prefix is the one on top
      bestOptions = f[5] + "," + (tail.length > 2 ? tail[2] : "");
    }
    for (String o : bestOptions.split(",")) {
      if (o.equals("dax") || o.equals("dax=always")) {
        return true;
      }
    }
    return false;
  }

  private static String unescape(String s) {
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
        .replace("\\134", "\\");
  }
}
