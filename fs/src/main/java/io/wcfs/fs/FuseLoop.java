package io.wcfs.fs;

import java.io.IOException;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.Struct;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Mounts a jnr-fuse filesystem and serves its requests from a fixed pool of Java threads, with
 * libfuse2's own session calls (what fuse_loop_mt does, minus its thread management).
 *
 * <p>Why not fuse_main: its worker threads are native threads that libfuse starts and stops as
 * load changes, so every upcall into Java found a thread the JVM did not know, and jffi attached
 * it (a new java.lang.Thread) and detached it again, per request. That cost ~20 µs of a 30 µs
 * request on this project's benchmark machine, 15x the engine's whole write+commit. Threads
 * the JVM started are attached for life; the upcall becomes an ordinary call.
 *
 * <p>libfuse2 ABI used here (fuse_common.h, fuse_lowlevel.h of 2.9): {@code struct fuse_args
 * {int argc; char **argv; int allocated;}} and {@code struct fuse_buf {size_t size; enum flags;
 * void *mem; int fd; off_t pos;}} on LP64.
 */
final class FuseLoop {
  private static final Logger LOG = LoggerFactory.getLogger(FuseLoop.class);
  private static final int EINTR = 4;
  private static final int FUSE_BUF_SIZE = 40;
  private static final int FUSE_BUF_MEM = 16;

  /**
   * The libfuse2 calls fuse_main makes, bound by hand (jnr-fuse binds only fuse_main). Not
   * fuse_mount + fuse_new: dlsym("fuse_new") finds the unversioned compat symbol of 2.2, not
   * fuse_new@@FUSE_2.6; fuse_setup has no such twin.
   */
  public interface LibFuse2 {
    Pointer fuse_setup(int argc, Pointer argv, Pointer ops, long opSize, Pointer mountpoint,
        Pointer multithreaded, Pointer userData);

    void fuse_teardown(Pointer fuse, Pointer mountpoint);

    Pointer fuse_get_session(Pointer fuse);

    Pointer fuse_session_next_chan(Pointer se, Pointer ch);

    long fuse_chan_bufsize(Pointer ch);

    int fuse_session_receive_buf(Pointer se, Pointer buf, Pointer chp);

    void fuse_session_process_buf(Pointer se, Pointer buf, Pointer ch);

    int fuse_session_exited(Pointer se);

    void fuse_session_exit(Pointer se);
  }

  private static final LibFuse2 FUSE = LibraryLoader.create(LibFuse2.class).failImmediately()
      .load("fuse");
  private static final Runtime RT = Runtime.getRuntime(FUSE);

  private FuseLoop() {}

  /**
   * Mounts {@code ops} at {@code mountpoint} with libfuse options {@code args} (as on fuse_main's
   * command line, without the mountpoint), serves requests on {@code threads} threads, and
   * returns once the filesystem is unmounted and every thread has finished its request.
   */
  static void serve(Struct ops, Path mountpoint, List<String> args, int threads)
      throws IOException {
    // -f: fuse_setup must not daemonize; the wcfs launcher already did.
    List<String> argv = new ArrayList<>(List.of("wcfs", mountpoint.toString(), "-f"));
    argv.addAll(args);
    List<Pointer> strings = new ArrayList<>(); // kept reachable: libfuse reads them
    Pointer argvMem = Memory.allocateDirect(RT, (argv.size() + 1) * 8L, true);
    for (int i = 0; i < argv.size(); i++) {
      byte[] b = argv.get(i).getBytes(StandardCharsets.UTF_8);
      Pointer s = Memory.allocateDirect(RT, b.length + 1, true);
      s.put(0, b, 0, b.length);
      strings.add(s);
      argvMem.putPointer(i * 8L, s);
    }
    Pointer mountpointOut = Memory.allocateDirect(RT, 8, true); // libfuse's copy, for teardown
    Pointer multithreaded = Memory.allocateDirect(RT, 4, true);
    Pointer fuse = FUSE.fuse_setup(argv.size(), argvMem, Struct.getMemory(ops), Struct.size(ops),
        mountpointOut, multithreaded, null);
    Reference.reachabilityFence(strings);
    if (fuse == null) {
      throw new IOException("libfuse could not mount " + mountpoint + " with options " + args
          + " (its reason is in the log above)");
    }
    Pointer se = FUSE.fuse_get_session(fuse);
    Pointer ch = FUSE.fuse_session_next_chan(se, null);
    long bufSize = FUSE.fuse_chan_bufsize(ch);
    List<Thread> workers = new ArrayList<>();
    for (int i = 0; i < threads; i++) {
      Thread t = new Thread(() -> work(se, ch, bufSize, mountpoint), "wcfs-fuse-" + i);
      t.setDaemon(true);
      workers.add(t);
      t.start();
    }
    boolean interrupted = false;
    for (Thread t : workers) {
      while (t.isAlive()) {
        try {
          t.join();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    }
    FUSE.fuse_teardown(fuse, mountpointOut.getPointer(0)); // closes /dev/fuse, frees the session
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  private static void unmountLazily(Path mountpoint) {
    try {
      Mounts.fusermountUnmount(mountpoint, true);
    } catch (IOException e) {
      LOG.error("could not unmount {}: {}", mountpoint, e.getMessage());
    }
  }

  /** One worker: receive a request, process it (the upcall runs here), until the end. */
  private static void work(Pointer se, Pointer ch, long bufSize, Path mountpoint) {
    Pointer mem = Memory.allocateDirect(RT, bufSize, false);
    Pointer buf = Memory.allocateDirect(RT, FUSE_BUF_SIZE, true);
    Pointer chp = Memory.allocateDirect(RT, 8, true);
    while (FUSE.fuse_session_exited(se) == 0) {
      buf.putLong(0, bufSize); // receive overwrites size with the request's length
      buf.putPointer(FUSE_BUF_MEM, mem);
      chp.putPointer(0, ch);
      int res = FUSE.fuse_session_receive_buf(se, buf, chp);
      if (res == -EINTR) {
        continue;
      }
      if (res <= 0) {
        // 0: the kernel ended the connection (unmounted); every worker sees it.
        if (res < 0) {
          LOG.error("reading /dev/fuse failed with errno {}; unmounting {}", -res, mountpoint);
          FUSE.fuse_session_exit(se);
          unmountLazily(mountpoint); // wakes the other workers with ENODEV once nothing is open
        }
        break;
      }
      FUSE.fuse_session_process_buf(se, buf, chp.getPointer(0));
    }
  }
}
