package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
}
