package io.wcfs.nativ;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The xattr calls relative to a directory descriptor (what the FUSE layer passes through). */
class XattrCallsTest {
  @TempDir Path tmp;

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  @DisplayName("set, get, list and remove reach the node below the descriptor; ENODATA is null")
  void roundTrip() throws Exception {
    Files.writeString(tmp.resolve("f"), "x");
    int root = LibC.openat(LibC.AT_FDCWD, tmp.toString(), LibC.O_PATH | LibC.O_DIRECTORY, 0);
    try {
      assertNull(Xattr.getxattrAt(root, "f", "user.a"));
      Xattr.setxattrAt(root, "f", "user.a", bytes("one"), 0);
      Xattr.setxattrAt(root, "f", "user.empty", new byte[0], 0);
      assertArrayEquals(bytes("one"), Xattr.getxattrAt(root, "f", "user.a"));
      assertArrayEquals(new byte[0], Xattr.getxattrAt(root, "f", "user.empty"));
      assertTrue(Xattr.listxattrAt(root, "f").containsAll(List.of("user.a", "user.empty")));
      // XATTR_CREATE on an existing name: EEXIST, as the caller's own setxattr would say
      assertEquals(-17, Xattr.setxattrAt(root, "f", "user.a", 0, 0, 1));
      assertEquals(0, Xattr.removexattrAt(root, "f", "user.a"));
      assertEquals(-Xattr.ENODATA, Xattr.removexattrAt(root, "f", "user.a"));
      assertEquals(-2, Xattr.removexattrAt(root, "missing", "user.a")); // ENOENT
    } finally {
      LibC.close(root);
    }
  }

  @Test
  @DisplayName("a symlink's own attributes, not its target's")
  void symlinkItself() throws Exception {
    Files.writeString(tmp.resolve("target"), "x");
    Files.createSymbolicLink(tmp.resolve("link"), Path.of("target"));
    int root = LibC.openat(LibC.AT_FDCWD, tmp.toString(), LibC.O_PATH | LibC.O_DIRECTORY, 0);
    try {
      Xattr.setxattrAt(root, "link", "trusted.wcfs", bytes("link"), 0);
      assertArrayEquals(bytes("link"), Xattr.getxattrAt(root, "link", "trusted.wcfs"));
      assertNull(Xattr.getxattrAt(root, "target", "trusted.wcfs"));
      // user.* is refused on symlinks by the kernel: the errno comes through unchanged
      assertEquals(-1, Xattr.setxattrAt(root, "link", "user.a", 0, 0, 0)); // EPERM
    } finally {
      LibC.close(root);
    }
  }

  @Test
  @DisplayName("a path near PATH_MAX below the descriptor works although root + path exceed it")
  void longPath() throws Exception {
    String component = "d".repeat(200);
    StringBuilder rel = new StringBuilder();
    Path dir = tmp;
    while (rel.length() < 3900) {
      dir = Files.createDirectory(dir.resolve(component));
      rel.append(component).append('/');
    }
    // Files cannot reach it any more by absolute path near PATH_MAX: create it relative.
    int root = LibC.openat(LibC.AT_FDCWD, tmp.toString(), LibC.O_PATH | LibC.O_DIRECTORY, 0);
    String path = rel + "f".repeat(4090 - rel.length());
    try {
      int fd = LibC.openat(root, path, LibC.O_CREAT | LibC.O_WRONLY, 0644);
      LibC.close(fd);
      assertTrue(tmp.toString().length() + 1 + path.length() > 4096);
      Xattr.setxattrAt(root, path, "user.deep", bytes("v"), 0);
      assertArrayEquals(bytes("v"), Xattr.getxattrAt(root, path, "user.deep"));
    } finally {
      // @TempDir's cleanup walks absolute paths and cannot reach this deep: unlink relatively
      LibC.unlinkat(root, path, 0);
      for (String d = rel.substring(0, rel.length() - 1); !d.isEmpty();
          d = d.contains("/") ? d.substring(0, d.lastIndexOf('/')) : "") {
        LibC.unlinkat(root, d, LibC.AT_REMOVEDIR);
      }
      LibC.close(root);
    }
  }
}
