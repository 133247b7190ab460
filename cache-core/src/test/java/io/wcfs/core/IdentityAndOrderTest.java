package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Identity (a path lookup is never a reason to drop committed data) and the order of backing
 * namespace changes against cache commits (DESIGN.md, "Identity"; issue: data loss).
 */
@Timeout(60)
class IdentityAndOrderTest {
  private static final int BS = 512;
  @TempDir Path tmp;
  Path root;
  RecordingBackingStore store;
  CrashingMemory mem;

  @BeforeEach
  void setUp() throws IOException {
    root = Files.createDirectories(tmp.resolve("backing"));
    store = new RecordingBackingStore(root);
    mem = CacheFixture.memoryFor(64, BS);
    CacheLayout.format(mem, BS, store.identity());
  }

  private WriteCache open() throws IOException {
    return WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), CacheFixture.nextBoot());
  }

  private static byte[] random(int len, int seed) {
    byte[] b = new byte[len];
    new Random(seed).nextBytes(b);
    return b;
  }

  /** A crash of the machine: the cache keeps what was committed, plus any subset of the rest. */
  private void crash(WriteCache c) throws IOException {
    c.abandon();
    mem = mem.crash(new Random(5));
  }

  @Test
  @DisplayName("inodes renumbered by a remount: committed data stays, goes to its path, counted")
  void renumberedInodesKeepData() throws IOException {
    byte[] old = random(8 * BS, 1);
    Files.write(root.resolve("old.bin"), old);
    Files.createDirectories(root.resolve("d"));
    Files.createFile(root.resolve("d/new.bin"));
    WriteCache c = open();
    byte[] fresh = random(20 * BS + 7, 2);
    CacheFixture.write(c, "d/new.bin", 0, fresh);
    byte[] patch = random(5000, 3);
    CacheFixture.write(c, "old.bin", 1000, patch);
    c.commit();
    crash(c);
    store.inodeOffset = 1_000_000; // the network filesystem was remounted
    WriteCache r = open();
    try {
      byte[] expectedOld = CacheFixture.apply(old, 1000, patch);
      assertArrayEquals(fresh, CacheFixture.read(r, "d/new.bin"), "served from the cache");
      assertArrayEquals(expectedOld, CacheFixture.read(r, "old.bin"));
      assertEquals(2, r.stats().recovery().inodeHintMismatches(), "each mismatch counted");
      r.flush(10_000);
      assertArrayEquals(fresh, Files.readAllBytes(root.resolve("d/new.bin")));
      assertArrayEquals(expectedOld, Files.readAllBytes(root.resolve("old.bin")));
    } finally {
      r.close();
    }
  }

  @Test
  @DisplayName("a file whose path is gone at recovery goes to lost+found, not away")
  void vanishedPathGoesToLostAndFound() throws IOException {
    Files.createDirectories(root.resolve("d"));
    Files.createFile(root.resolve("d/a"));
    WriteCache c = open();
    byte[] data = random(3 * BS + 11, 4);
    CacheFixture.write(c, "d/a", 0, data);
    c.commit();
    crash(c);
    Files.delete(root.resolve("d/a")); // behind the cache's back
    Files.delete(root.resolve("d"));
    WriteCache r = open();
    try {
      assertEquals(1, r.stats().recovery().lostAndFoundFiles());
      r.flush(10_000);
      Path lf = root.resolve(WriteCache.LOST_AND_FOUND);
      List<Path> found;
      try (Stream<Path> s = Files.list(lf)) {
        found = s.toList();
      }
      assertEquals(1, found.size(), found.toString());
      assertTrue(found.get(0).getFileName().toString().startsWith("d#a."), found.toString());
      assertArrayEquals(data, Files.readAllBytes(found.get(0)));
    } finally {
      r.close();
    }
  }

  @Test
  @DisplayName("a file deleted behind wcfs's back before writeback: its blocks go to lost+found")
  void deletedBeforeWritebackGoesToLostAndFound() throws IOException {
    Files.createFile(root.resolve("a"));
    WriteCache c = open();
    try {
      byte[] data = random(2 * BS, 6);
      CacheFixture.write(c, "a", 0, data); // whole blocks: the backing file is never opened
      c.commit();
      Files.delete(root.resolve("a"));
      c.flush(10_000);
      assertEquals(1, c.stats().recovery().lostAndFoundFiles());
      try (Stream<Path> s = Files.list(root.resolve(WriteCache.LOST_AND_FOUND))) {
        assertArrayEquals(data, Files.readAllBytes(s.findFirst().orElseThrow()));
      }
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("journaled unlink: the backing name stays until writeback; its directory is"
      + " fsync'd before the record is freed")
  void unlinkSyncsDirectoryBeforeFreeing() throws IOException {
    Files.createDirectories(root.resolve("d"));
    Files.createFile(root.resolve("d/victim"));
    WriteCache c = open();
    try {
      CacheFixture.write(c, "d/victim", 0, random(4 * BS, 7));
      c.commit();
      CacheLayout layout = CacheLayout.open(mem, null);
      c.unlink("d/victim");
      c.commit();
      assertTrue(Files.exists(root.resolve("d/victim")), "the backing directory is untouched"
          + " until writeback applies the record: " + store.events());
      assertEquals(0, committedEntries(layout), "the dead file's blocks are freed by the commit"
          + " of its record");
      assertEquals(1, committedRecords(layout));
      int[] recordsAtSync = {-1};
      store.onDirectorySync = p -> {
        if (p.equals("d")) {
          recordsAtSync[0] = committedRecords(layout);
        }
      };
      c.flush(60_000);
      assertFalse(Files.exists(root.resolve("d/victim")), store.events().toString());
      assertEquals(1, recordsAtSync[0], "the record was freed before its directory's fsync: "
          + store.events());
      assertEquals(0, committedRecords(layout), "freed after it");
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("atomic save through the journal: in the backing directory the new file's data"
      + " is fsync'd before the rename, and both directories after it, before the record goes")
  void renameOverSyncsDirectoriesFirst() throws IOException {
    Files.createDirectories(root.resolve("d"));
    Files.write(root.resolve("d/target"), random(BS, 3));
    WriteCache c = open();
    try {
      CacheFixture.write(c, "d/target", 0, random(2 * BS, 9));
      c.commit();
      CacheFixture.create(c, "tmp");
      byte[] doc = random(3 * BS, 8);
      CacheFixture.write(c, "tmp", 0, doc);
      c.commit();
      c.rename("tmp", "d/target");
      c.commit();
      assertFalse(store.events().contains("rename tmp d/target"), "journaled, not done yet");
      assertEquals(List.of("target"), list(root.resolve("d")));
      c.flush(60_000);
      List<String> ev = store.events();
      int renamed = ev.indexOf("rename tmp d/target");
      assertTrue(renamed >= 0, ev.toString());
      assertTrue(ev.indexOf("fsync tmp") >= 0 && ev.indexOf("fsync tmp") < renamed,
          "the new document durable before its name: " + ev);
      assertTrue(ev.subList(renamed, ev.size()).containsAll(List.of("fsyncdir d", "fsyncdir ")),
          ev.toString());
      assertArrayEquals(doc, Files.readAllBytes(root.resolve("d/target")));
      assertFalse(Files.exists(root.resolve("tmp")));
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("a block overwritten while its writeback batch is in flight: every slot comes"
      + " back free after the drain")
  void overwriteDuringWritebackLeaksNoSlot() throws IOException {
    Files.createFile(root.resolve("f"));
    WriteCache c = open();
    try {
      CacheFixture.write(c, "f", 0, random(3 * BS, 1));
      c.commit();
      boolean[] once = {true};
      store.beforeWriteback = p -> {
        if (once[0]) {
          once[0] = false;
          CacheFixture.write(c, "f", 0, random(BS, 2)); // replaces a block the batch holds
          c.commit();
        }
      };
      c.writebackStep();
      store.beforeWriteback = p -> { };
      c.flush(60_000);
      CacheStats s = c.stats();
      assertEquals(s.space().blocks(), s.space().freeBlocks(), "free blocks after a full drain");
    } finally {
      c.close();
    }
  }

  private static List<String> list(Path dir) throws IOException {
    try (var s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  private static int committedRecords(CacheLayout layout) {
    try {
      int n = 0;
      for (int i = 0; i < layout.geometry().journalRecords(); i++) {
        if (CacheLayout.isCommitted(layout.recordSeq(i), layout.seqCount())) {
          n++;
        }
      }
      return n;
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  @DisplayName("the name of a new file is durable once a commit returns")
  void newNameDurableAtCommit() throws IOException {
    Files.createDirectories(root.resolve("sub"));
    Files.createFile(root.resolve("sub/new"));
    WriteCache c = open();
    try {
      c.namespaceChanged("sub/new"); // what fs does after create
      c.commit();
      assertTrue(store.events().contains("fsyncdir sub"), store.events().toString());
      store.events.clear();
      c.commit();
      assertFalse(store.events().contains("fsyncdir sub"), "once is enough");
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("a size-only change of a file with nothing cached is durable after commit")
  void sizeOnlyChangeSynced() throws IOException {
    Files.createFile(root.resolve("f"));
    WriteCache c = open();
    try {
      WriteCache.OpenFile h = c.open("f");
      c.truncate(h, 100_000); // ftruncate up, or fallocate: no block in the cache
      c.close(h);
      c.commit();
      assertTrue(store.events().contains("fsync f"), store.events().toString());
      assertEquals(100_000, Files.size(root.resolve("f")));
    } finally {
      c.close();
    }
  }

  @Test
  @DisplayName("write-through fsyncs: a second fsync waits for the first, and errors stick")
  void writeThroughFsyncsAreOrderedAndErrorsStick() throws Exception {
    String longName = "x".repeat(CacheLayout.MAX_PATH_BYTES + 10);
    Files.createFile(root.resolve(longName));
    WriteCache c = open();
    try {
      CacheFixture.write(c, longName, 0, random(BS, 10)); // too long for a slot: write-through
      CountDownLatch inSync = new CountDownLatch(1);
      CountDownLatch release = new CountDownLatch(1);
      store.onFileSync = p -> {
        inSync.countDown();
        try {
          release.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        throw new IOException("injected EIO");
      };
      CompletableFuture<Void> first = CompletableFuture.runAsync(() -> commitUnchecked(c));
      assertTrue(inSync.await(10, TimeUnit.SECONDS));
      CompletableFuture<Void> second = CompletableFuture.runAsync(() -> commitUnchecked(c));
      assertThrows(TimeoutException.class, () -> second.get(300, TimeUnit.MILLISECONDS),
          "the second fsync returned while the first one's backing fsync was still running");
      release.countDown();
      assertTrue(failed(first), "the failing fsync reports its error");
      assertTrue(failed(second), "so does the one that overlapped it");
      store.onFileSync = p -> { };
      c.commit(); // retried: the file stayed queued
      assertTrue(store.events().contains("fsync " + longName), store.events().toString());
    } finally {
      store.onFileSync = p -> { };
      c.close();
    }
  }

  private static void commitUnchecked(WriteCache c) {
    try {
      c.commit();
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  private static boolean failed(CompletableFuture<Void> f) throws InterruptedException {
    try {
      f.get(10, TimeUnit.SECONDS);
      return false;
    } catch (java.util.concurrent.ExecutionException e) {
      return e.getCause() instanceof java.io.UncheckedIOException;
    } catch (TimeoutException e) {
      throw new AssertionError("fsync hung", e);
    }
  }

  private static int committedEntries(CacheLayout layout) throws IOException {
    long seqCount = layout.seqCount();
    int n = 0;
    for (int s = 0; s < layout.geometry().nBlocks(); s++) {
      long seq = layout.entrySeq(s);
      if (seq != CacheLayout.FREE && seq < seqCount) {
        n++;
      }
    }
    return n;
  }

  static byte[] filled(int len, int v) {
    byte[] b = new byte[len];
    Arrays.fill(b, (byte) v);
    return b;
  }
}
