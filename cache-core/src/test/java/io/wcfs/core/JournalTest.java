package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The namespace journal: records, the overlay, their application and their recovery. */
@Timeout(120)
class JournalTest {
  private static final int BS = 512;
  @TempDir Path tmp;
  private Path root;
  private RecordingBackingStore store;
  private CrashingMemory mem;

  @BeforeEach
  void setUp() throws IOException {
    root = Files.createDirectories(tmp.resolve("backing"));
    store = new RecordingBackingStore(root);
    mem = CacheFixture.memoryFor(256, BS);
    CacheLayout.format(mem, BS, store.identity());
  }

  private WriteCache open(long boot) throws IOException {
    return WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
  }

  private static byte[] random(int len, int seed) {
    byte[] b = new byte[len];
    new Random(seed).nextBytes(b);
    return b;
  }

  @Test
  @DisplayName("a file created, written, fsync'd and unlinked never touches the backing"
      + " directory (SQLite's rollback journal)")
  void createdAndRemovedFileIsElided() throws IOException {
    WriteCache c = open(CacheFixture.nextBoot());
    try {
      for (int i = 0; i < 5; i++) {
        CacheFixture.create(c, "db-journal");
        CacheFixture.write(c, "db-journal", 0, random(3 * BS, i));
        c.commit();
        c.unlink("db-journal");
        c.commit();
      }
      assertNull(c.stats().error());
      c.flush(60_000);
      assertTrue(store.events().stream().noneMatch(e -> e.contains("db-journal")),
          store.events().toString());
      assertFalse(Files.exists(root.resolve("db-journal")));
      assertEquals(5, c.stats().journal().createsElided());
      assertEquals(0, c.stats().journal().pending());
      assertEquals(0, c.stats().space().dirtyBlocks(), "its blocks were dropped, not written back");
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("names change in the mount at once and in the backing directory only when"
      + " writeback applies them, with the data first")
  void overlayThenBacking() throws IOException {
    Files.write(root.resolve("old"), random(BS, 1));
    WriteCache c = open(CacheFixture.nextBoot());
    try {
      CacheFixture.create(c, "new");
      byte[] data = random(2 * BS + 7, 2);
      CacheFixture.write(c, "new", 0, data);
      c.unlink("old");
      c.commit();
      assertArrayEquals(data, CacheFixture.read(c, "new"));
      assertThrows(NoSuchFileException.class, () -> c.open("old"));
      assertThrows(NoSuchFileException.class, () -> c.shown("old"));
      assertNotNull(c.shown("new"));
      assertEquals(java.util.Set.of("new", "old"), c.overlayChildren("").keySet());
      assertNull(c.overlayChildren("").get("old"), "a whiteout");
      assertTrue(Files.exists(root.resolve("old")) && !Files.exists(root.resolve("new")),
          "the backing directory is untouched before writeback");
      long shownIno = c.shown("new").ino();
      c.flush(60_000);
      assertArrayEquals(data, Files.readAllBytes(root.resolve("new")));
      assertFalse(Files.exists(root.resolve("old")));
      assertNull(c.shown("new"), "the overlay forgot it: the backing directory says");
      long backingIno = (Long) Files.getAttribute(root.resolve("new"), "unix:ino");
      long backingDev = (Long) Files.getAttribute(root.resolve("new"), "unix:dev");
      assertEquals(shownIno, c.shownIno(backingDev, backingIno),
          "the inode number the mount showed first stays");
      List<String> ev = store.events();
      assertTrue(ev.indexOf("create new") < ev.indexOf("fsync new")
          && ev.contains("fsyncdir "), ev.toString());
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("a daemon crash loses no name change that returned (same boot), a power loss"
      + " every one not committed")
  void uncommittedRecordsAndTheTwoKindsOfCrash() throws IOException {
    Files.write(root.resolve("db"), random(BS, 3));
    long boot = CacheFixture.nextBoot();
    WriteCache c = open(boot);
    CacheFixture.create(c, "db-journal");
    CacheFixture.write(c, "db-journal", 0, random(BS, 4));
    c.commit();
    c.unlink("db-journal"); // SQLite: the commit point of its transaction, never fsync'd
    CacheFixture.create(c, "tmp");
    c.rename("tmp", "db"); // and an atomic save, not fsync'd either
    c.abandon();
    CrashingMemory killed = mem.processCrash();
    CrashingMemory powerLost = mem.crash(new Random(5));

    mem = killed;
    WriteCache again = open(boot);
    try {
      assertThrows(NoSuchFileException.class, () -> again.open("db-journal"),
          "a hot journal would roll back a transaction SQLite reported committed");
      assertEquals(0, CacheFixture.read(again, "db").length, "the rename happened");
      assertFalse(Files.exists(root.resolve("db-journal")));
      assertEquals(List.of("db"), list());
    } finally {
      again.abandon();
    }

    // The same cache image as it was before that recovery, after a power loss instead.
    Files.deleteIfExists(root.resolve("db"));
    Files.write(root.resolve("db"), random(BS, 3));
    mem = powerLost;
    WriteCache after = open(CacheFixture.nextBoot());
    try {
      assertArrayEquals(random(BS, 3), CacheFixture.read(after, "db"),
          "the uncommitted rename is gone");
      assertArrayEquals(random(BS, 4), CacheFixture.read(after, "db-journal"),
          "the committed create and data are there, the uncommitted unlink is not");
      assertEquals(List.of("db", "db-journal"), list());
    } finally {
      after.close();
    }
  }

  @Test
  @DisplayName("a full journal makes namespace operations wait for writeback; nothing is lost")
  void fullJournalWaits() throws IOException {
    WriteCache c = open(CacheFixture.nextBoot());
    int capacity = c.stats().journal().records() > 0
        ? (int) c.stats().journal().records() : 64;
    java.util.Set<String> names = new java.util.TreeSet<>();
    try {
      for (int i = 0; i < 3 * capacity; i++) {
        String name = "f" + (i % 7);
        if (!names.contains(name)) {
          CacheFixture.create(c, name);
          CacheFixture.write(c, name, 0, random(100, i));
          names.add(name);
        } else if (i % 2 == 0) {
          c.unlink(name);
          names.remove(name);
        } else {
          c.rename(name, "g" + i);
          names.remove(name);
          names.add("g" + i);
        }
        assertTrue(c.stats().journal().pending() <= capacity);
      }
      c.commit();
      c.flush(60_000);
      assertEquals(0, c.stats().journal().pending());
      assertTrue(c.stats().journal().applied() > capacity, "it wrapped");
      assertEquals(new java.util.ArrayList<>(names), list());
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("records the backing directory refuses at mount stay in the journal; the mount"
      + " shows their names and writeback applies them later")
  void recordsRefusedAtRecoveryStayAndShow() throws IOException {
    Files.write(root.resolve("doc"), random(BS, 6));
    FailingBackingStore failing = new FailingBackingStore(root);
    WriteCache c = WriteCache.openManual(mem, failing, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
    CacheFixture.create(c, "doc.tmp");
    byte[] doc = random(2 * BS, 7);
    CacheFixture.write(c, "doc.tmp", 0, doc);
    c.commit();
    c.rename("doc.tmp", "doc");
    c.commit();
    c.abandon();
    mem = mem.crash(new Random(8));
    failing.refuseWriteback = true; // e.g. the claim on a shared directory not held yet
    WriteCache again = WriteCache.openManual(mem, failing, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
    try {
      assertEquals(2, again.stats().journal().pending());
      assertArrayEquals(doc, CacheFixture.read(again, "doc"), "the mount shows the save");
      assertThrows(NoSuchFileException.class, () -> again.open("doc.tmp"));
      assertArrayEquals(random(BS, 6), Files.readAllBytes(root.resolve("doc")),
          "the backing directory still has the old document");
      failing.refuseWriteback = false;
      again.flush(60_000);
      assertArrayEquals(doc, Files.readAllBytes(root.resolve("doc")));
      assertEquals(List.of("doc"), list());
    } finally {
      again.close();
    }
  }

  private List<String> list() throws IOException {
    try (var s = Files.list(root)) {
      return s.map(p -> p.getFileName().toString()).filter(n -> !n.startsWith("."))
          .sorted().toList();
    }
  }
}
