package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.core.PowerLossBackingStore.RenameModel;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** The power-loss simulator of the backing directory itself: what survives, what does not. */
class PowerLossBackingStoreTest {

  private static PowerLossBackingStore store() {
    return new PowerLossBackingStore("t", RenameModel.SPLIT);
  }

  private static void write(BackingStore.BackingFile f, long pos, byte[] data) throws IOException {
    try (NativeBuffer b = new NativeBuffer(data.length)) {
      b.put(0, data, 0, data.length);
      f.write(pos, b.address(), data.length);
    }
  }

  private static byte[] read(BackingStore.BackingFile f, long pos, int len) throws IOException {
    try (NativeBuffer b = new NativeBuffer(Math.max(1, len))) {
      int n = (int) f.read(pos, b.address(), len);
      byte[] out = new byte[n];
      b.get(0, out, 0, n);
      return out;
    }
  }

  private static byte[] bytes(int len, int seed) {
    byte[] b = new byte[len];
    new Random(seed).nextBytes(b);
    return b;
  }

  /** A file "name" (parents made) with {@code data}, its data and every name durable. */
  private static void durableFile(PowerLossBackingStore s, String name, byte[] data)
      throws IOException {
    s.createFile(name);
    try (BackingStore.BackingFile f = s.open(name)) {
      write(f, 0, data);
      f.sync();
    }
    String dir = name;
    do {
      dir = dir.contains("/") ? dir.substring(0, dir.lastIndexOf('/')) : "";
      s.syncDirectory(dir);
    } while (!dir.isEmpty());
  }

  @Test
  @DisplayName("fsync'd data survives, data written after the fsync does not")
  void fsyncedDataSurvivesUnsyncedDoesNot() throws IOException {
    PowerLossBackingStore s = store();
    byte[] first = bytes(1500, 1);
    durableFile(s, "a", first);
    try (BackingStore.BackingFile f = s.open("a")) {
      write(f, 1000, bytes(2000, 2)); // overwrites the tail and extends: never synced
      assertEquals(3000, f.size());
    }
    s.powerLoss();
    assertArrayEquals(first, s.content("a"));
    assertEquals(1500, s.stat("a").size());
  }

  @Test
  @DisplayName("a truncate without fsync is undone; with fsync it holds, and regrowth reads zeros")
  void truncateDurableOnlyAfterFsync() throws IOException {
    PowerLossBackingStore s = store();
    byte[] data = bytes(2048, 3);
    durableFile(s, "a", data);
    try (BackingStore.BackingFile f = s.open("a")) {
      f.truncate(100);
    }
    s.powerLoss();
    assertArrayEquals(data, s.content("a"));
    try (BackingStore.BackingFile f = s.open("a")) {
      f.truncate(100);
      f.truncate(300);
      f.sync();
      assertArrayEquals(new byte[200], read(f, 100, 200), "the cut bytes do not come back");
    }
    s.powerLoss();
    assertArrayEquals(Arrays.copyOf(Arrays.copyOf(data, 100), 300), s.content("a"));
  }

  @Test
  @DisplayName("a new file's fsync does not make its name durable; the directory's fsync does")
  void newNameNeedsDirectoryFsync() throws IOException {
    PowerLossBackingStore s = store();
    s.createFile("n");
    try (BackingStore.BackingFile f = s.open("n")) {
      write(f, 0, bytes(10, 4));
      f.sync();
    }
    s.powerLoss();
    assertNull(s.stat("n"), "name lost: only the file was fsync'd");
    s.createFile("n");
    try (BackingStore.BackingFile f = s.open("n")) {
      write(f, 0, bytes(10, 4));
      f.sync();
    }
    s.syncDirectory("");
    s.powerLoss();
    assertArrayEquals(bytes(10, 4), s.content("n"));
  }

  @Test
  @DisplayName("parents made by createFile are durable only with their own parent's fsync")
  void createdParentsNeedTheirParentsFsync() throws IOException {
    PowerLossBackingStore s = store();
    s.createFile("p/q/f");
    s.syncDirectory("p/q"); // the file's name in q, but q's name in p and p's in the root not
    s.powerLoss();
    assertNull(s.stat("p"));
    assertEquals(List.of(), s.tree());
    s.createFile("p/q/f");
    s.syncDirectory("p/q");
    s.syncDirectory("p");
    s.syncDirectory("");
    s.powerLoss();
    assertEquals(List.of("p/", "p/q/", "p/q/f"), s.tree());
  }

  @Test
  @DisplayName("a rename without directory fsync is lost; with it, it holds")
  void renameNeedsDirectoryFsync() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(100, 5));
    long ino = s.stat("a").ino();
    s.rename("a", "b");
    assertNull(s.stat("a"));
    s.powerLoss();
    assertEquals(Map.of("a", ino), s.files(), "back under its old name");
    s.rename("a", "b");
    s.syncDirectory("");
    s.powerLoss();
    assertEquals(Map.of("b", ino), s.files());
    assertArrayEquals(bytes(100, 5), s.content("b"));
  }

  @Test
  @DisplayName("a rename over a file: the replaced file comes back unless the directory was synced")
  void renameOverAFile() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 6));
    durableFile(s, "b", bytes(20, 7));
    long a = s.stat("a").ino();
    long b = s.stat("b").ino();
    s.rename("a", "b");
    assertEquals(Map.of("b", a), s.files());
    s.powerLoss();
    assertEquals(Map.of("a", a, "b", b), s.files());
    assertArrayEquals(bytes(20, 7), s.content("b"));
  }

  @Test
  @DisplayName("an unlink without directory fsync is undone, with its data as last fsync'd")
  void unlinkNeedsDirectoryFsync() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "d/a", bytes(700, 8));
    try (BackingStore.BackingFile f = s.open("d/a")) {
      s.unlink("d/a");
      write(f, 0, bytes(5, 9)); // the open file lives on without a name
      f.sync();
    }
    assertNull(s.stat("d/a"));
    s.powerLoss();
    assertArrayEquals(CacheFixture.apply(bytes(700, 8), 0, bytes(5, 9)), s.content("d/a"),
        "the name came back, and the data the nameless inode fsync'd is its data");
    s.unlink("d/a");
    s.syncDirectory("d");
    s.powerLoss();
    assertNull(s.stat("d/a"));
  }

  @Test
  @DisplayName("SPLIT: a cross-directory rename is durable per directory (both or neither"
      + " names between the two fsyncs)")
  void splitCrossDirectoryRename() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 10));
    s.mkdir("d");
    s.syncDirectory("");
    long ino = s.stat("a").ino();
    s.rename("a", "d/a");
    s.syncDirectory(""); // the removal only
    s.powerLoss();
    assertEquals(Map.of(), s.files(), "neither name");
    durableFile(s, "a", bytes(10, 10));
    ino = s.stat("a").ino();
    s.rename("a", "d/a");
    s.syncDirectory("d"); // the new name only
    s.powerLoss();
    assertEquals(Map.of("a", ino, "d/a", ino), s.files(), "both names");
    assertEquals(2, s.stat("a").nlink());
  }

  @Test
  @DisplayName("JOURNALED: an fsync of either directory makes the whole rename durable")
  void journaledCrossDirectoryRename() throws IOException {
    for (String synced : new String[] {"", "d"}) {
      PowerLossBackingStore s = new PowerLossBackingStore("j", RenameModel.JOURNALED);
      durableFile(s, "a", bytes(10, 11));
      s.mkdir("d");
      s.syncDirectory("");
      long ino = s.stat("a").ino();
      s.rename("a", "d/a");
      s.syncDirectory(synced);
      s.powerLoss();
      assertEquals(Map.of("d/a", ino), s.files(), "synced " + synced);
    }
  }

  @Test
  @DisplayName("random survival: unsynced data survives whole, not at all, or sector-wise;"
      + " every sector is old or new, never anything else")
  void randomSurvivalOfData() throws IOException {
    byte[] old = bytes(4 * PowerLossBackingStore.SECTOR, 12);
    byte[] neu = bytes(6 * PowerLossBackingStore.SECTOR, 13);
    Set<String> seen = new HashSet<>();
    for (int seed = 0; seed < 200; seed++) {
      PowerLossBackingStore s = store();
      durableFile(s, "a", old);
      try (BackingStore.BackingFile f = s.open("a")) {
        write(f, 0, neu);
      }
      s.powerLoss(new Random(seed));
      byte[] got = s.content("a");
      assertTrue(got.length == old.length || got.length == neu.length, "size old or new");
      int fromOld = 0;
      int fromNew = 0;
      for (int sec = 0; sec * PowerLossBackingStore.SECTOR < got.length; sec++) {
        int from = sec * PowerLossBackingStore.SECTOR;
        byte[] g = Arrays.copyOfRange(got, from, from + PowerLossBackingStore.SECTOR);
        byte[] o = Arrays.copyOf(Arrays.copyOfRange(old, Math.min(from, old.length),
            Math.min(from + PowerLossBackingStore.SECTOR, old.length)),
            PowerLossBackingStore.SECTOR);
        byte[] n = Arrays.copyOfRange(neu, from, from + PowerLossBackingStore.SECTOR);
        boolean isOld = Arrays.equals(g, o);
        boolean isNew = Arrays.equals(g, n);
        assertTrue(isOld || isNew, "seed " + seed + ": sector " + sec + " is neither");
        fromOld += isOld ? 1 : 0;
        fromNew += isNew ? 1 : 0;
      }
      // Torn: the old size with new sectors, the new size with old ones (zeros past the old
      // end), or a sector-wise mix of the two.
      seen.add(Arrays.equals(got, old) ? "old" : Arrays.equals(got, neu) ? "new" : "torn");
      if (fromOld > 0 && fromNew > 0 && !Arrays.equals(got, old)) {
        seen.add("sectors of both");
      }
    }
    assertEquals(Set.of("old", "new", "torn", "sectors of both"), seen);
  }

  @Test
  @DisplayName("random survival: a directory keeps a prefix of its changes, an operation whole")
  void randomSurvivalOfNames() throws IOException {
    Set<Map<String, Long>> outcomes = new HashSet<>();
    Set<Map<String, Long>> crossOutcomes = new HashSet<>();
    for (int seed = 0; seed < 300; seed++) {
      PowerLossBackingStore s = store();
      durableFile(s, "a", bytes(3, 14));
      s.mkdir("d");
      s.syncDirectory("");
      long a = s.stat("a").ino();
      s.createFile("c");
      long c = s.stat("c").ino();
      s.rename("a", "b"); // one directory: both names or neither would be torn
      s.powerLoss(new Random(seed));
      Map<String, Long> got = s.files();
      outcomes.add(got);
      assertTrue(got.equals(Map.of("a", a)) || got.equals(Map.of("a", a, "c", c))
          || got.equals(Map.of("b", a, "c", c)), "seed " + seed + ": not a prefix: " + got);
      // Across directories, without any fsync: whole or not at all.
      long at = s.files().containsKey("a") ? a : -1;
      String name = at >= 0 ? "a" : "b";
      s.rename(name, "d/x");
      s.powerLoss(new Random(seed * 31L + 7));
      Map<String, Long> cross = s.files();
      crossOutcomes.add(Map.of("at", cross.containsKey("d/x") ? 1L : 0L, "old",
          cross.containsKey(name) ? 1L : 0L));
      assertTrue(cross.containsKey("d/x") != cross.containsKey(name),
          "seed " + seed + ": cross-directory rename torn without an fsync: " + cross);
    }
    assertEquals(3, outcomes.size(), "every prefix seen");
    assertEquals(2, crossOutcomes.size(), "both outcomes seen");
  }

  @Test
  @DisplayName("open files fail after a power loss; reopened ones work; a process crash keeps"
      + " everything")
  void handlesDieWithThePower() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 15));
    BackingStore.BackingFile f = s.open("a");
    s.powerLoss();
    assertThrows(IOException.class, () -> write(f, 0, new byte[1]));
    assertThrows(IOException.class, () -> read(f, 0, 1));
    assertThrows(IOException.class, f::sync);
    f.close(); // never fails
    BackingStore.BackingFile g = s.open("a");
    write(g, 0, bytes(3, 16));
    s.rename("a", "b");
    s.processCrash();
    assertThrows(IOException.class, g::size);
    assertArrayEquals(CacheFixture.apply(bytes(10, 15), 0, bytes(3, 16)), s.content("b"),
        "a process crash keeps what was not durable");
    s.powerLoss();
    assertArrayEquals(bytes(10, 15), s.content("a"), "until the power goes");
  }

  @Test
  @DisplayName("crashAfter: the n-th mutating call throws without happening, every call after"
      + " it too, until the power loss")
  void crashAfterCountsMutations() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 17));
    BackingStore.BackingFile f = s.open("a");
    long before = s.mutations();
    s.crashAfter(2);
    write(f, 0, bytes(4, 18)); // 0
    s.stat("a"); // not mutating
    s.createFile("b"); // 1
    assertThrows(CrashingMemory.SimulatedCrash.class, () -> s.rename("a", "c")); // 2
    assertTrue(s.hasCrashed());
    assertThrows(CrashingMemory.SimulatedCrash.class, () -> s.stat("a"));
    assertThrows(CrashingMemory.SimulatedCrash.class, f::sync);
    assertEquals(before + 3, s.mutations());
    s.processCrash(); // to look at what the calls did
    assertNotNull(s.stat("a"), "the crashing rename did not happen");
    assertNull(s.stat("c"));
    assertNotNull(s.stat("b"));
    assertFalse(s.hasCrashed());
    s.powerLoss();
    assertEquals(List.of("a"), s.tree());
    s.open("a").close(); // works again
  }

  @Test
  @DisplayName("links, symlinks and special nodes are names like others: durable with their"
      + " directory's fsync")
  void linksAndSpecialNodesNeedDirectoryFsync() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 7));
    s.mkdir("d");
    s.syncDirectory("");
    s.link("a", "d/b");
    s.symlink("../a", "d/s");
    s.mknod("d/p", 0010644, 0);
    assertEquals(2, s.stat("a").nlink());
    assertArrayEquals("../a".getBytes(), s.readlink("d/s"));
    assertFalse(s.stat("d/s").regularFile());
    assertThrows(FileSystemException.class, () -> s.open("d/p"));
    assertThrows(FileSystemException.class, () -> s.readlink("a"), "EINVAL: not a symlink");
    assertThrows(FileSystemException.class, () -> s.link("d", "e"), "EPERM: a directory");
    assertThrows(FileAlreadyExistsException.class, () -> s.symlink("x", "d/b"));
    List<String> names = new java.util.ArrayList<>();
    s.list("d", names::add);
    assertEquals(List.of("b", "p", "s"), names);
    s.powerLoss();
    assertEquals(List.of("a", "d/"), s.tree(), "d was not fsync'd");
    assertEquals(1, s.stat("a").nlink());
    s.link("a", "d/b");
    s.symlink("../a", "d/s");
    s.syncDirectory("d");
    s.powerLoss();
    assertEquals(List.of("a", "d/", "d/b", "d/s"), s.tree());
    assertEquals(2, s.stat("a").nlink());
    assertThrows(DirectoryNotEmptyException.class, () -> s.rmdir("d"));
  }

  @Test
  @DisplayName("a file's mtime set by setTimes is durable with its fsync, not before")
  void setTimesDurableWithFileFsync() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 8));
    long before = s.stat("a").mtimeNanos();
    s.setTimes("a", BackingStore.TimeSpec.OMIT, new BackingStore.TimeSpec(5, 6));
    assertEquals(5_000_000_006L, s.stat("a").mtimeNanos());
    s.powerLoss();
    assertEquals(before, s.stat("a").mtimeNanos(), "not fsync'd: lost");
    s.setTimes("a", BackingStore.TimeSpec.OMIT, new BackingStore.TimeSpec(5, 6));
    try (BackingStore.BackingFile f = s.open("a")) {
      f.sync();
    }
    s.powerLoss();
    assertEquals(5_000_000_006L, s.stat("a").mtimeNanos());
    s.chmod("a", 0600); // not modelled: only the name is checked
    assertThrows(NoSuchFileException.class, () -> s.chown("nope", 1, 1));
    assertThrows(NoSuchFileException.class, () -> s.access("nope", 0));
  }

  @Test
  @DisplayName("errors as a real directory gives them")
  void errorsLikeARealDirectory() throws IOException {
    PowerLossBackingStore s = store();
    s.createFile("d/f");
    s.mkdir("e");
    s.createFile("e/g");
    assertThrows(NoSuchFileException.class, () -> s.open("nope"));
    assertThrows(NoSuchFileException.class, () -> s.unlink("nope"));
    assertThrows(NoSuchFileException.class, () -> s.rename("nope", "x"));
    assertThrows(NoSuchFileException.class, () -> s.rename("d/f", "missing/f"));
    assertThrows(NoSuchFileException.class, () -> s.mkdir("missing/x"));
    assertThrows(NoSuchFileException.class, () -> s.createNew("missing/x"));
    assertThrows(NoSuchFileException.class, () -> s.syncDirectory("missing"));
    assertNull(s.stat("missing/x"));
    assertThrows(FileAlreadyExistsException.class, () -> s.mkdir("d"));
    assertThrows(FileAlreadyExistsException.class, () -> s.createNew("d/f"));
    assertThrows(DirectoryNotEmptyException.class, () -> s.rename("d", "e"));
    assertThrows(DirectoryNotEmptyException.class, () -> s.rmdir("d"));
    assertThrows(NotDirectoryException.class, () -> s.stat("d/f/x"));
    assertThrows(NotDirectoryException.class, () -> s.createFile("d/f/x"));
    assertThrows(NotDirectoryException.class, () -> s.syncDirectory("d/f"));
    assertThrows(NotDirectoryException.class, () -> s.rename("d", "e/g"));
    assertThrows(FileSystemException.class, () -> s.unlink("d"));
    assertThrows(FileSystemException.class, () -> s.open("d"));
    assertThrows(FileSystemException.class, () -> s.rename("e/g", "d"));
    assertThrows(FileSystemException.class, () -> s.rename("d", "d/sub"));
    s.createFile("d/f"); // an existing file is left as it is
    assertEquals(List.of("d/", "d/f", "e/", "e/g"), s.tree());
    s.unlink("e/g");
    s.rename("d", "e"); // over an empty directory
    assertEquals(List.of("e/", "e/f"), s.tree());
  }

  @Test
  @DisplayName("syncAll (syncfs) makes every pending name and every file's data durable")
  void syncAllMakesEverythingDurable() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "a", bytes(10, 21));
    s.createFile("d/b");
    try (BackingStore.BackingFile f = s.open("d/b")) {
      write(f, 0, bytes(700, 22));
    }
    s.rename("a", "d/a");
    s.syncAll();
    s.powerLoss();
    assertEquals(List.of("d/", "d/a", "d/b"), s.tree());
    assertArrayEquals(bytes(700, 22), s.content("d/b"));
    assertArrayEquals(bytes(10, 21), s.content("d/a"));
  }

  @Test
  @DisplayName("counters count fsyncs of files and of directories")
  void counters() throws IOException {
    PowerLossBackingStore s = store();
    durableFile(s, "x/a", bytes(1, 19)); // one file fsync, two directory fsyncs
    assertEquals(1, s.fileSyncs());
    assertEquals(2, s.directorySyncs());
    s.powerLoss();
    assertEquals(1, s.powerLosses());
  }

  @Test
  @DisplayName("identity is stable across power losses, and a cache formats and runs on it")
  void cacheRunsOnIt() throws IOException {
    PowerLossBackingStore s = store();
    s.createFile("f");
    s.syncDirectory("");
    CacheLayout.BackingIdentity id = s.identity();
    CrashingMemory mem = CacheFixture.memoryFor(32, 512);
    CacheLayout.format(mem, 512, id);
    WriteCache c = WriteCache.openManual(mem, s, CacheFixture.manualConfig(512),
        CacheFixture.nextBoot());
    byte[] data = bytes(3000, 20);
    CacheFixture.write(c, "f", 0, data);
    c.commit();
    s.powerLoss(); // the backing file never got it: it is in the cache
    assertEquals(0, s.content("f").length);
    c.abandon();
    assertEquals(id, s.identity());
    c = WriteCache.openManual(mem, s, CacheFixture.manualConfig(512), CacheFixture.nextBoot());
    assertArrayEquals(data, CacheFixture.read(c, "f"));
    c.flush(10_000);
    c.close();
    s.powerLoss();
    assertArrayEquals(data, s.content("f"), "writeback made it durable");
    assertTrue(s.fileSyncs() > 0);
  }
}
