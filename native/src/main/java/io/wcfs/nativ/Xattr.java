package io.wcfs.nativ;

import com.kenai.jffi.MemoryIO;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.types.size_t;
import jnr.ffi.types.ssize_t;

/**
 * Extended attributes of nodes below a directory descriptor, through the /proc/self/fd path of
 * an O_PATH descriptor (see {@link #getxattrAt}). Each call answers 0, a size, or -errno, as
 * the FUSE layer wants; the Java-friendly forms throw {@link NativeIOException}.
 */
public final class Xattr {
  /** The jnr-ffi view of libc's xattr calls. Public only for jnr-ffi's generated class. */
  public interface Api {
    @SaveError
    int openat(int dirfd, String path, int flags, int mode);

    @SaveError
    int close(int fd);

    @SaveError
    @ssize_t
    long getxattr(String path, String name, long value, @size_t long size);

    @SaveError
    int setxattr(String path, String name, long value, @size_t long size, int flags);

    @SaveError
    @ssize_t
    long listxattr(String path, long list, @size_t long size);

    @SaveError
    int removexattr(String path, String name);
  }

  private static final Api API = LibraryLoader.create(Api.class).failImmediately().load("c");
  private static final Runtime RUNTIME = Runtime.getRuntime(API);
  private static final MemoryIO IO = MemoryIO.getInstance();

  private Xattr() {}

  public static final int ENODATA = 61;
  public static final int ENOTSUP = 95;
  public static final int ERANGE = 34;

  /**
   * A node below {@code dirfd} for the xattr calls: an O_PATH descriptor that does not follow a
   * final symlink (so a symlink's own attributes are reached, as l*xattr would), named by its
   * /proc/self/fd path. The plain (following) calls on that path act on exactly the node the
   * descriptor holds: the kernel resolves the /proc link to it and stops there. The l* calls
   * would act on the /proc link itself (EOPNOTSUPP). Only the descriptor's number goes into
   * the path, so a path below dirfd may be as long as the kernel allows.
   */
  private static int xattrNode(int dirfd, String path) {
    return API.openat(dirfd, path, LibC.O_PATH | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, 0);
  }

  private static String procFd(int fd) {
    return "/proc/self/fd/" + fd;
  }

  /** getxattr of {@code path} below {@code dirfd} (a symlink itself, not its target): the value's size, or -errno. */
  public static long getxattrAt(int dirfd, String path, String name, long buf, long size) {
    int fd = xattrNode(dirfd, path);
    if (fd < 0) {
      return -RUNTIME.getLastError();
    }
    try {
      long n = API.getxattr(procFd(fd), name, buf, size);
      return n < 0 ? -RUNTIME.getLastError() : n;
    } finally {
      API.close(fd);
    }
  }

  /** setxattr (flags XATTR_CREATE=1, XATTR_REPLACE=2) of a node below {@code dirfd}; 0 or -errno. */
  public static int setxattrAt(int dirfd, String path, String name, long value, long size,
      int flags) {
    int fd = xattrNode(dirfd, path);
    if (fd < 0) {
      return -RUNTIME.getLastError();
    }
    try {
      return rc(API.setxattr(procFd(fd), name, value, size, flags));
    } finally {
      API.close(fd);
    }
  }

  /** listxattr of a node below {@code dirfd}: the list's size, or -errno. */
  public static long listxattrAt(int dirfd, String path, long buf, long size) {
    int fd = xattrNode(dirfd, path);
    if (fd < 0) {
      return -RUNTIME.getLastError();
    }
    try {
      long n = API.listxattr(procFd(fd), buf, size);
      return n < 0 ? -RUNTIME.getLastError() : n;
    } finally {
      API.close(fd);
    }
  }

  /** removexattr of a node below {@code dirfd}; 0 or -errno (ENODATA: it had none). */
  public static int removexattrAt(int dirfd, String path, String name) {
    int fd = xattrNode(dirfd, path);
    if (fd < 0) {
      return -RUNTIME.getLastError();
    }
    try {
      return rc(API.removexattr(procFd(fd), name));
    } finally {
      API.close(fd);
    }
  }

  /** Java-friendly getxattrAt: the value, or null if the node has no such attribute. */
  public static byte[] getxattrAt(int dirfd, String path, String name) throws NativeIOException {
    for (int room = 256; ; room *= 4) {
      long buf = IO.allocateMemory(room, false);
      try {
        long n = getxattrAt(dirfd, path, name, buf, room);
        if (n == -ENODATA) {
          return null;
        }
        if (n == -ERANGE && room < (1 << 20)) {
          continue;
        }
        LibC.check((int) Math.min(0, n), "getxattr " + name + " of " + path);
        byte[] b = new byte[(int) n];
        IO.getByteArray(buf, b, 0, (int) n);
        return b;
      } finally {
        IO.freeMemory(buf);
      }
    }
  }

  /** Java-friendly listxattrAt: the names. */
  public static java.util.List<String> listxattrAt(int dirfd, String path)
      throws NativeIOException {
    for (int room = 1024; ; room *= 4) {
      long buf = IO.allocateMemory(room, false);
      try {
        long n = listxattrAt(dirfd, path, buf, room);
        if (n == -ERANGE && room < (1 << 20)) {
          continue;
        }
        LibC.check((int) Math.min(0, n), "listxattr of " + path);
        byte[] b = new byte[(int) n];
        IO.getByteArray(buf, b, 0, (int) n);
        java.util.List<String> names = new java.util.ArrayList<>();
        int start = 0;
        for (int i = 0; i < b.length; i++) {
          if (b[i] == 0) {
            names.add(new String(b, start, i - start, java.nio.charset.StandardCharsets.UTF_8));
            start = i + 1;
          }
        }
        return names;
      } finally {
        IO.freeMemory(buf);
      }
    }
  }

  /** Java-friendly setxattrAt. */
  public static void setxattrAt(int dirfd, String path, String name, byte[] value, int flags)
      throws NativeIOException {
    long buf = IO.allocateMemory(Math.max(1, value.length), false);
    try {
      IO.putByteArray(buf, value, 0, value.length);
      LibC.check(setxattrAt(dirfd, path, name, buf, value.length, flags),
          "setxattr " + name + " of " + path);
    } finally {
      IO.freeMemory(buf);
    }
  }

  private static int rc(int result) {
    return result == 0 ? 0 : -RUNTIME.getLastError();
  }
}
