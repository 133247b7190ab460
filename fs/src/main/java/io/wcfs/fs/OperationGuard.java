package io.wcfs.fs;

import io.wcfs.core.BackingStore;
import io.wcfs.core.CacheErrorException;
import io.wcfs.nativ.NativeIOException;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import ru.serce.jnrfuse.ErrorCodes;

/**
 * What every FUSE operation goes through before and after the engine: wcfs's reserved
 * directory refused, the claim on the backing directory checked for operations that change it
 * synchronously, and every failure mapped to an errno (nothing escapes into native code).
 * WcfsFileSystem is the operation table; this is the one rule all its entries share.
 */
final class OperationGuard {
  private static final Logger LOG = LoggerFactory.getLogger(WcfsFileSystem.class);

  private final BackingStore backing;

  OperationGuard(BackingStore backing) {
    this.backing = backing;
  }

  /**
   * {@code BACKING/.wcfs} (the claim, see {@link BackingClaim}) is wcfs's own: the mount does
   * not show it, and nothing can be made or moved there.
   */
  static boolean reserved(String path) {
    return path != null && (path.equals("/" + BackingClaim.DIR)
        || path.startsWith("/" + BackingClaim.DIR + "/"));
  }

  /**
   * What the filesystem does: whether it changes the backing directory synchronously (only
   * while the claim on it holds: checked before anything, so that it fails whole even where the
   * engine would keep the change in the cache), and whether it only looks (ENOENT, not EPERM,
   * in wcfs's own reserved directory). Which operation may wait for the backing disk is not
   * decided here: the backing store hands the request loop's leadership on right before each
   * call that may wait (Daemon's store does), so an operation the namespace journal answers
   * from memory (a chown of a file not written back yet) keeps the leader.
   */
  enum Op {
    // (changesBacking, looksOnly)
    ACCESS(false, true),
    CHMOD(true, false),
    CHOWN(true, false),
    CREATE(false, false), // journaled: memory only (DESIGN.md, namespace journal)
    FALLOCATE(false, false),
    FSYNC(false, false),
    FSYNCDIR(false, false), // a cache commit, like fsync
    FTRUNCATE(false, false),
    GETATTR(false, true),
    GETXATTR(false, false),
    LINK(true, false),
    LISTXATTR(false, false),
    MKDIR(true, false),
    MKNOD(true, false),
    OPEN(false, true),
    READ(false, false),
    READDIR(false, true),
    READLINK(false, true),
    RELEASE(false, true),
    REMOVEXATTR(true, false),
    RENAME(false, false),
    RMDIR(true, false),
    SETXATTR(true, false),
    STATFS(false, false),
    SYMLINK(true, false),
    TRUNCATE(false, false),
    UNLINK(false, false),
    UTIMENS(true, false),
    WRITE(false, false);

    /** Changes the backing directory synchronously, not through the journal. */
    final boolean changesBacking;
    final boolean looksOnly;

    Op(boolean changesBacking, boolean looksOnly) {
      this.changesBacking = changesBacking;
      this.looksOnly = looksOnly;
    }

    @Override
    public String toString() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  /** Runs an operation, mapping exceptions to -errno; nothing escapes into native code. */
  int run(Op op, String path, IoCall call) {
    if (reserved(path)) {
      return op.looksOnly ? -ErrorCodes.ENOENT() : -ErrorCodes.EPERM();
    }
    try {
      if (op.changesBacking) {
        // made here straight in the backing directory: only while the claim on it holds
        backing.checkMayWriteBack();
      }
      return call.run();
    } catch (NativeIOException e) {
      return -e.errno();
    } catch (NoSuchFileException e) {
      return -ErrorCodes.ENOENT();
    } catch (FileAlreadyExistsException e) {
      return -ErrorCodes.EEXIST();
    } catch (DirectoryNotEmptyException e) {
      return -ErrorCodes.ENOTEMPTY();
    } catch (NotDirectoryException e) {
      return -ErrorCodes.ENOTDIR();
    } catch (AccessDeniedException e) {
      return -ErrorCodes.EACCES();
    } catch (CacheErrorException e) {
      LOG.debug("{} {}: {}", op, path, e.getMessage());
      return -ErrorCodes.EIO();
    } catch (IOException e) {
      LOG.warn("{} {} failed: {}", op, path, e.toString());
      return -ErrorCodes.EIO();
    } catch (RuntimeException | Error e) {
      LOG.error("{} {}: unexpected failure, answering EIO", op, path, e);
      return -ErrorCodes.EIO();
    }
  }

  interface IoCall {
    int run() throws IOException;
  }
}
