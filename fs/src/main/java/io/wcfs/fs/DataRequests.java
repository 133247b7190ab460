package io.wcfs.fs;

import static io.wcfs.fs.FuseProtocol.*;

import io.wcfs.nativ.LibC;
import java.nio.charset.StandardCharsets;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The data path's requests answered straight from the request buffer, without libfuse2's
 * high-level layer: WRITE, READ, FSYNC and FSYNCDIR, and the kernel's security.capability
 * probe that comes before a write whenever the inode's attributes were refreshed. They are
 * most of what a database sends (a SQLite rollback-journal transaction: 12 writes, 4 fsyncs
 * of the files and the directory and 4 probes of 33 requests; fio: all of them), and libfuse2
 * spent more on each than the cache does: it decodes the request, builds the node's path
 * under its tree lock, calls up into Java through a JNI closure, wraps the arguments in jnr
 * structs and copies the reply (measured here: 4 µs of CPU for a probe the cache answers from
 * memory, 7-8 µs for a write, of a ~15 µs round trip).
 *
 * <p>None of them needs a path: the kernel names the open file by the handle our open
 * returned (libfuse2's high-level layer passes fi->fh through unchanged) and the probe by its
 * node. What needs more (a write that must first clear set-ID bits or a file capability, a
 * handle we do not know, a capability we have not seen absent) is declined and goes through
 * libfuse2 as before, as does everything on the io_uring transport, whose replies go into ring
 * entries. libfuse2 never sees the requests answered here; INTERRUPTs are answered ENOSYS
 * ({@link FuseWorker}), so none waits in libfuse2 for a request it never saw.
 */
final class DataRequests {
  /** What the filesystem answers, by handle and node; {@link #DECLINE} leaves it to libfuse2. */
  interface Handler {
    int DECLINE = Integer.MIN_VALUE;

    /** Bytes written, -errno, or DECLINE. */
    int write(long fh, long node, long offset, long data, int size);

    /** Bytes read into {@code dst}, -errno, or DECLINE. */
    int read(long fh, long offset, long dst, int size);

    /** 0, -errno, or DECLINE. */
    int fsync(long fh);

    /** -ENODATA when the node is known to have no file capability; else DECLINE. */
    int probeCapability(long node);
  }

  private static final Logger LOG = LoggerFactory.getLogger(DataRequests.class);
  private static final byte[] CAPABILITY =
      "security.capability\0".getBytes(StandardCharsets.US_ASCII);

  /** The daemon's user: the mount's owner, whom libfuse2's allow_root lets through. */
  private static final int OWN_UID = LibC.geteuid();
  /** Requests answered here (status: fuse_requests_direct). */
  private static final java.util.concurrent.atomic.LongAdder ANSWERED =
      new java.util.concurrent.atomic.LongAdder();

  /** The handler every worker uses; null until the filesystem registers (tests without it). */
  private static volatile Handler handler;

  private final int fd;
  /** The reply: out header, then a READ's data read straight behind it. */
  private final Pointer reply;
  private final long replyRoom;
  private final byte[] name = new byte[CAPABILITY.length];

  static void register(Handler h) {
    handler = h;
  }

  static long answered() {
    return ANSWERED.sum();
  }

  /** One per worker thread: {@code room} bytes of reply, enough for the largest read. */
  DataRequests(int fd, long room) {
    this.fd = fd;
    this.replyRoom = room;
    this.reply = Memory.allocateDirect(Runtime.getSystemRuntime(), room, false);
  }

  /**
   * Answers the request at {@code mem} if it is one of ours and the handler takes it; false
   * leaves it, untouched, to libfuse2.
   */
  boolean answer(int opcode, Pointer mem) {
    Handler h = handler;
    if (h == null) {
      return false;
    }
    long len = mem.getInt(0) & 0xffffffffL; // fuse_in_header.len
    long node = mem.getLong(16);
    int rc;
    long payload = 0;
    switch (opcode) {
      case FUSE_WRITE -> { // fuse_write_in {fh, offset, size, write_flags, ...}, then the data
        int size = mem.getInt(IN_HEADER + 16);
        if (size < 0 || len < IN_HEADER + RW_IN + (long) size) {
          return false;
        }
        rc = h.write(mem.getLong(IN_HEADER), node, mem.getLong(IN_HEADER + 8),
            mem.address() + IN_HEADER + RW_IN, size);
        if (rc >= 0) {
          reply.putInt(OUT_HEADER, rc); // fuse_write_out {size, padding}
          reply.putInt(OUT_HEADER + 4, 0);
          payload = 8;
        }
      }
      case FUSE_READ -> { // fuse_read_in {fh, offset, size, ...}
        int size = mem.getInt(IN_HEADER + 16);
        if (size < 0 || size > replyRoom - OUT_HEADER) {
          return false;
        }
        rc = h.read(mem.getLong(IN_HEADER), mem.getLong(IN_HEADER + 8),
            reply.address() + OUT_HEADER, size);
        payload = Math.max(rc, 0);
      }
      // fuse_fsync_in {fh, flags}; a directory's fsync is the same one commit (see fsyncdir)
      case FUSE_FSYNC, FUSE_FSYNCDIR -> rc = h.fsync(mem.getLong(IN_HEADER));
      case FUSE_GETXATTR -> { // fuse_getxattr_in {size, padding}, then the name
        int uid = mem.getInt(24); // fuse_in_header.uid
        if (len < IN_HEADER + 8 + CAPABILITY.length || (uid != 0 && uid != OWN_UID)) {
          // Another user's: libfuse2 decides (with -o allow_root it refuses them EACCES).
          return false;
        }
        mem.get(IN_HEADER + 8, name, 0, name.length);
        if (!java.util.Arrays.equals(name, CAPABILITY)) {
          return false;
        }
        rc = h.probeCapability(node);
      }
      default -> {
        return false;
      }
    }
    if (rc == Handler.DECLINE) {
      return false;
    }
    ANSWERED.increment();
    reply.putInt(0, (int) (OUT_HEADER + payload));
    reply.putInt(4, rc < 0 ? rc : 0);
    reply.putLong(8, mem.getLong(8)); // fuse_in_header.unique
    long n = LibC.write(fd, reply.address(), OUT_HEADER + payload);
    if (n < 0 && n != -ENOENT) { // ENOENT: the request was interrupted meanwhile
      LOG.warn("sending the reply to FUSE opcode {} failed: {}", opcode,
          LibC.strerror((int) -n));
    }
    return true;
  }
}
