package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import java.io.IOException;

/**
 * The origin the cache writes back to: a directory tree, addressed by paths relative to its root
 * ("" is the root, no leading slash). Owned by the engine so that every ordering rule can be
 * tested in-process, including with a store that fails.
 */
public interface BackingStore {
  /**
   * What the engine needs of a file's metadata. {@code (dev, ino)} tells files apart while
   * they are open; it is not an identity that survives a remount (network filesystems renumber
   * inodes), so nothing persistent rests on it alone.
   */
  record Stat(long dev, long ino, long size, long mtimeNanos, int nlink, boolean regularFile,
      boolean directory) {}

  /** The directory holding {@code path} ("" for a name in the root). */
  static String parentOf(String path) {
    int slash = path.lastIndexOf('/');
    return slash < 0 ? "" : path.substring(0, slash);
  }

  /** lstat; null when the path does not exist. */
  Stat stat(String path) throws IOException;

  /** Opens an existing regular file for reading and writing. */
  BackingFile open(String path) throws IOException;

  /**
   * Creates an empty regular file (mode 0600) and any missing parent directories; an existing
   * regular file is left as it is. For data that has to be put somewhere: lost+found.
   */
  void createFile(String path) throws IOException;

  /**
   * Creates a new regular file with exactly this mode (no umask) and owner, failing with
   * {@link java.nio.file.FileAlreadyExistsException} if the name exists; open for reading and
   * writing. Writeback's application of a journaled create.
   */
  BackingFile create(String path, int mode, int uid, int gid) throws IOException;

  /**
   * fsync of a directory: makes the names created, removed or renamed in it durable. The
   * engine calls it before a commit that relies on those names.
   */
  void syncDirectory(String path) throws IOException;

  /**
   * syncfs(2) of the filesystem holding the directory: every change pending on it made
   * durable, names and data, whoever made them. Recovery calls it first: a daemon killed in
   * the same boot may have left changes its next commit was to make durable (directories
   * changed outside the journal, size-only changes of files with nothing cached), which the
   * restarted engine does not know of. Nothing to do by default.
   */
  default void syncAll() throws IOException {}

  void unlink(String path) throws IOException;

  void rename(String from, String to) throws IOException;

  /**
   * Asked before every writeback batch: throws when this cache may not write to the backing
   * directory now, e.g. because its claim on a directory of a shared filesystem lapsed or was
   * taken over by another machine (DESIGN.md, "Backing directory on a shared or distributed
   * filesystem"). The batch then fails as after a backing I/O error: its blocks stay in the
   * cache and writeback retries with backoff. The exception's message says why and is shown by
   * status. Always allowed by default.
   */
  default void checkMayWriteBack() throws IOException {}

  /** The directory's identity, recorded in the superblock. */
  CacheLayout.BackingIdentity identity() throws IOException;

  /** An open backing file; positional I/O with native addresses. */
  interface BackingFile extends AutoCloseable {
    /** Reads up to {@code length} bytes; fewer only at end of file. */
    long read(long position, long dstAddress, long length) throws IOException;

    void write(long position, long srcAddress, long length) throws IOException;

    /**
     * Writeback's write of whole cache blocks (the caller truncates any excess past the end of
     * file), gathered from the buffers of {@code data} and written back to back from {@code
     * position}; with {@code direct}, bypassing the page cache where the filesystem allows.
     * Durable, like {@link #write}, only after {@link #sync}.
     */
    default void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
      for (int i = 0; i < data.count(); i++) {
        write(position, data.base(i), data.length(i));
        position += data.length(i);
      }
    }

    /** The size of the open file itself (fstat), whatever path names it now. */
    long size() throws IOException;

    void truncate(long size) throws IOException;

    /**
     * Makes {@code [position, position + length)} read as zeros without changing the file's
     * size, deallocating it where the filesystem can ({@code FALLOC_FL_PUNCH_HOLE |
     * FALLOC_FL_KEEP_SIZE}), keeping it allocated with {@code punch} false ({@code
     * FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE}). A filesystem without either gets zeros
     * written, which reads the same. Durable, like {@link #write}, only after {@link #sync}.
     */
    default void zeroRange(long position, long length, boolean punch) throws IOException {
      writeZeros(this, position, length);
    }

    /** fsync: data and size durable. */
    void sync() throws IOException;

    /** Sets the open file's own mtime (futimens), whatever path names it now. */
    void setMtime(long mtimeNanos) throws IOException;

    @Override
    void close() throws IOException;

    /** Writes zeros over the part of the range below the file's end (never extends it). */
    static void writeZeros(BackingFile file, long position, long length) throws IOException {
      long end = Math.min(position + length, file.size());
      if (end <= position) {
        return;
      }
      int chunk = (int) Math.min(1 << 20, end - position);
      try (io.wcfs.nativ.NativeBuffer zeros = new io.wcfs.nativ.NativeBuffer(chunk)) {
        io.wcfs.nativ.NativeBuffer.zero(zeros.address(), chunk);
        for (long p = position; p < end; p += chunk) {
          file.write(p, zeros.address(), Math.min(chunk, end - p));
        }
      }
    }
  }
}
