package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.nativ.NativeIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The store reaches everything through the descriptor of its root opened at construction,
 * never through the root's path: a wcfs mounted in place ({@code wcfs mount CACHE /data /data})
 * covers that path with its own mount, and whatever a path reaches afterwards is the mount.
 */
class DirectoryBackingStoreTest {
  @TempDir Path tmp;

  @Test
  @DisplayName("after the root's path names another directory, everything still lands in the"
      + " root it was opened with (lost+found's directories included)")
  void nothingByTheRootsPath() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("data"));
    Files.writeString(root.resolve("kept"), "old");
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    try {
      // What a mount over the root does to its path, without needing a mount: the path now
      // leads somewhere else.
      Path moved = tmp.resolve("underneath");
      Files.move(root, moved);
      Path cover = Files.createDirectories(root);
      String lost = WriteCache.LOST_AND_FOUND + "/dir#file.slot3-seq7";
      store.createFile(lost);
      assertTrue(Files.isRegularFile(moved.resolve(lost)), "created under the opened root");
      store.createFile(lost); // an existing file is left as it is
      assertEquals(3, store.stat("kept").size(), "read through the opened root");
      store.rename("kept", "renamed");
      store.syncDirectory("");
      assertTrue(Files.exists(moved.resolve("renamed")));
      try (Stream<Path> s = Files.list(cover)) {
        assertEquals(0, s.count(), "nothing reached the directory now at the root's path");
      }
      assertEquals(root.toRealPath().toString(), store.identity().path(),
          "the identity still names the path it was opened at");
    } finally {
      store.close();
    }
  }

  @Test
  @DisplayName("syncAll runs syncfs(2) on the root's filesystem (its O_PATH descriptor would"
      + " be refused)")
  void syncAll() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("synced"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    try {
      store.createFile("d/f");
      store.syncAll(); // throws on EBADF and any other error but EINVAL/ENOSYS
      assertTrue(Files.isRegularFile(root.resolve("d/f")));
    } finally {
      store.close();
    }
  }

  @Test
  @DisplayName("names and attributes: made relative to the root, failing with the call's errno")
  void namesAndAttributes() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("names"));
    DirectoryBackingStore store = new DirectoryBackingStore(root);
    try {
      store.mkdir("d", 0755);
      store.createFile("d/f");
      store.link("d/f", "g");
      store.symlink("d/f", "s");
      store.mknod("p", 0010600, 0); // a FIFO
      assertEquals(2, store.stat("g").nlink());
      assertArrayEquals("d/f".getBytes(), store.readlink("s"));
      store.chmod("g", 0640);
      store.setTimes("g", BackingStore.TimeSpec.OMIT, new BackingStore.TimeSpec(7, 9));
      assertEquals(7_000_000_009L, store.stat("d/f").mtimeNanos());
      store.setTimes("g", BackingStore.TimeSpec.NOW, BackingStore.TimeSpec.OMIT);
      assertEquals(7_000_000_009L, store.stat("d/f").mtimeNanos(), "OMIT left it");
      java.util.List<String> names = new java.util.ArrayList<>();
      store.list("", names::add);
      assertEquals(java.util.Set.of("d", "g", "s", "p"), java.util.Set.copyOf(names));
      store.access("d/f", 4);
      BackingStore.FsStats fs = store.statfs();
      assertTrue(fs.blockSize() > 0 && fs.blocks() > 0 && fs.nameMax() >= 255, fs.toString());
      assertEquals(17, errno(() -> store.mkdir("d", 0755)), "EEXIST");
      assertEquals(39, errno(() -> store.rmdir("d")), "ENOTEMPTY");
      assertEquals(20, errno(() -> store.rmdir("g")), "ENOTDIR");
      assertEquals(22, errno(() -> store.readlink("g")), "EINVAL: not a symlink");
      assertEquals(2, errno(() -> store.chown("nope", -1, -1)), "ENOENT");
      assertEquals(2, errno(() -> store.access("nope", 0)), "ENOENT");
      assertEquals(36, errno(() -> store.mkdir("x".repeat(300), 0755)), "ENAMETOOLONG");
      store.unlink("g");
      store.unlink("d/f");
      store.rmdir("d");
      assertTrue(Files.notExists(root.resolve("d")));
    } finally {
      store.close();
    }
  }

  private interface Call {
    void run() throws Exception;
  }

  private static int errno(Call call) {
    return assertThrows(NativeIOException.class, call::run).errno();
  }
}
