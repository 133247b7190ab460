package io.wcfs.fs;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;

/**
 * libfuse2 as wcfs binds it, in one place: the calls of fuse_main that {@link FuseLoop} makes
 * itself (jnr-fuse binds only fuse_main, and supplies the operations' struct). {@link
 * #require} loads it once, for the command line to tell early and clearly when it is missing.
 */
final class LibFuse {
  private LibFuse() {}

  /**
   * The libfuse2 calls fuse_main makes, bound by hand (jnr-fuse binds only fuse_main). Not
   * fuse_mount + fuse_new: dlsym("fuse_new") finds the unversioned compat symbol of 2.2, not
   * fuse_new@@FUSE_2.6; fuse_setup has no such twin.
   */
  public interface Api {
    Pointer fuse_setup(int argc, Pointer argv, Pointer ops, long opSize, Pointer mountpoint,
        Pointer multithreaded, Pointer userData);

    void fuse_teardown(Pointer fuse, Pointer mountpoint);

    Pointer fuse_get_session(Pointer fuse);

    Pointer fuse_session_next_chan(Pointer se, Pointer ch);

    long fuse_chan_bufsize(Pointer ch);

    int fuse_chan_fd(Pointer ch);

    void fuse_session_process_buf(Pointer se, Pointer buf, Pointer ch);

    Pointer fuse_kern_chan_new(int fd);

    void fuse_chan_destroy(Pointer ch);

    /**
     * A channel whose replies go to {@code ops} (struct fuse_chan_ops {receive, send, destroy},
     * copied): the io_uring transport's, whose send puts each reply into a ring entry.
     */
    Pointer fuse_chan_new(Pointer ops, int fd, long bufsize, Pointer data);

    int fuse_session_exited(Pointer se);

    void fuse_session_exit(Pointer se);
  }

  /**
   * fuse_chan_ops.send: {@code int (*send)(struct fuse_chan *ch, const struct iovec iov[],
   * size_t count)}; 0 or -errno. Called on the thread that processes the request.
   */
  public interface SendCallback {
    @jnr.ffi.annotations.Delegate
    int send(long ch, long iov, long count);
  }

  /** Loaded on first use: the library, every symbol of {@link Api} resolved. */
  private static final class Holder {
    static final Api API = LibraryLoader.create(Api.class).failImmediately().load("fuse");
  }

  static Api api() {
    return Holder.API;
  }

  /** Loads libfuse2 now; throws a {@link UsageException} naming the fix if it cannot. */
  static void require() {
    try {
      api();
    } catch (LinkageError | RuntimeException e) {
      throw new UsageException("libfuse.so.2 cannot be loaded (" + e.getMessage() + ");"
          + " install it: apt-get install libfuse2 fuse3");
    }
  }
}
