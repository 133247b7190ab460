package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.core.PowerLossBackingStore.RenameModel;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import org.junit.jupiter.api.Disabled;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Both media lose power: random workloads over {@link WriteCache} on a {@link CrashingMemory}
 * and a {@link PowerLossBackingStore} (its class comment states the durability model) crash at
 * random points: between operations, in the middle of a cache-memory operation, in the middle
 * of a backing operation (data writeback, the application of namespace journal records, a
 * commit), during recovery, or as a daemon crash in the same boot (the memory keeps every
 * store, the backing directory everything, durable or not). At a power loss the memory keeps
 * its committed words plus a random subset of the rest, the backing directory what was made
 * durable plus a random part of the rest.
 *
 * <p>Files are made as the mount makes them: {@link WriteCache#create} (a journaled CREATE: no
 * backing file until writeback or recovery applies it), unlinked and renamed through the cache
 * (journaled too). The model knows a file by a model id, and by its backing inode only once
 * that is durable (seen after a recovery or a full writeback). It keeps every namespace since
 * the last acknowledged commit ({@link WriteCache#commit} or {@link WriteCache#flush}
 * returned), as WriteCacheCrashTest does: the engine commits on its own too (truncate, a full
 * cache or journal, a rename's writeback), so a power loss may leave any of them. After
 * recovery, checked through the cache ({@link WriteCache#open}, read, {@link
 * WriteCache#shown}, {@link WriteCache#overlayChildren}) and in the backing directory:
 *
 * <ul>
 *   <li>recovery applied every committed record: the overlay is empty, the backing directory
 *       holds exactly the names the cache shows, none in lost+found;
 *   <li>the names are one of the namespaces since the last acknowledged commit (after a daemon
 *       crash: the newest, or the one before it if a namespace operation was in flight), each
 *       file with the backing inode it was known by;
 *   <li>after a power loss, every block of every file equals that block in one of the file's
 *       states since that commit (nothing torn, lost or invented; acknowledged data is byte
 *       for byte there); after a daemon crash, every operation that returned is there,
 *       committed or not, and the one in flight landed byte by byte or not (as
 *       SameBootRecoveryTest requires);
 *   <li>at half the crash points, a file extended by ftruncate reads zeros past its old end;
 *   <li>at a third of them, after a full writeback ({@link WriteCache#flush}) the backing
 *       directory holds exactly the model's names, files and bytes, and at half of those
 *       still does after one more power loss of the backing directory alone.
 * </ul>
 *
 * Engine bugs this test found have deterministic reproductions below; those not fixed are
 * {@code @Disabled} and listed in {@link KnownBug}, which the passing runs tolerate.
 *
 * <p>Reproducing: a failure prints its seed and the properties to rerun it. A run (test method,
 * property set) is deterministic; one workload alone (-Dwcfs.bothmedia.seed=N) does the same
 * unless what it did depended on the order of the files in a writeback batch, which the engine
 * takes from a HashMap keyed by identity hash codes (Writeback.collectBatch) and so from what
 * ran before in the JVM. -Dwcfs.bothmedia.model=SPLIT|JOURNALED, -Dwcfs.bothmedia.tolerate=
 * (comma-separated {@link KnownBug}s, or none) and -Dwcfs.bothmedia.workloads=N (soak) change
 * the run.
 */
class BothMediaCrashTest {
  private static final int BS = 512;
  private static final int NBLOCKS = 48;
  /** Workload w runs with seed BASE_SEED + w. */
  static final long BASE_SEED = 0x5eed_b07L;
  private static final int WORKLOADS = 32;
  private static final int CRASHES_PER_WORKLOAD = 100; // 3,200 crash points per test
  private static final String[] DIRS = {"d", "e"};
  private static final String[] NAMES = {"a", "b", "c", "d/x", "d/y", "e/z"};

  /**
   * Engine bugs this test found and that are not fixed; a run works around or tolerates those
   * in its set, so that it can look for others. Each has a {@code @Disabled} reproduction below.
   */
  enum KnownBug {
    // All fixed on 2026-11-30 (their reproductions below pass, and the random runs use none
    // of the workarounds); kept so that the workarounds can be tried against a build that
    // breaks one of them again.
    /**
     * A crash after writeback applied a journaled RENAME to the backing directory (rename(2)
     * done) and before its batch committed the file's new place: recovery applies the record
     * again, and its first step, {@code writeBackFile}, opens the file at the old path, which
     * is gone (NoSuchFileException). Recovery then keeps every record and rebuilds the
     * overlay: the mount shows the file at its new name, but its slot still says the old path,
     * so reading it fails, and writeback retries the record forever (a flush never returns).
     * Worked around: before recovery the test undoes such a rename in the backing directory,
     * durably (the state before the record was applied, which recovery handles). See {@link
     * #renameAppliedBeforeCrashIsStuck}.
     */
    RENAME_REAPPLIED_OPENS_GONE_SOURCE,
    /**
     * A power loss while writeback frees a batch's records (each record's seq stored FREE and
     * flushed, then one memory commit): the memory may keep the free of a later record of the
     * batch and not of an earlier one, and recovery refuses the cache ("namespace journal
     * records are not contiguous in the ring"). Worked around: before recovery the test
     * finishes such a free (the records before the last gap, all of the cut batch, whose
     * effects were durable before any free began). See {@link
     * #powerLossWhileFreeingRecordsRefusesMount}.
     */
    RECORD_FREES_TORN_BY_POWER_LOSS,
    /**
     * Writeback applies a committed CREATE or RENAME of a file that an uncommitted unlink or
     * rename over it killed meanwhile (the writeback thread applies committed records without
     * committing first): the backing directory changes and the record is freed, but {@code
     * placed} stores nothing for a dead file (and a renamed dead file is not written back
     * first), so its slot keeps its old place: ABSENT, or the rename's source. After a power
     * loss the death may be lost with its epoch: the file, alive again, is ABSENT with no
     * record, which recovery takes for a create that never committed (its acknowledged data
     * dropped, the backing file shows empty), or at a path that is gone (its data to
     * lost+found, the new name showing the backing file's stale data); or the death is kept,
     * its later records are elided and the backing file it got stays, a name nobody made
     * since the last commit. Worked around: the workload's journal steps commit first (as
     * flush, settle and a full journal do). See {@link #createAppliedToDeadFileLosesData},
     * {@link #renameAppliedToDeadFileGoesToLostAndFound} and {@link
     * #createAppliedToDeadFileLeaksName}.
     */
    RECORD_APPLIED_TO_DEAD_FILE_NOT_PLACED,
    /**
     * A daemon killed in an unlink or a rename over a file after the record was stored and
     * before the dying file's DEAD version was: same-boot recovery applies the record but
     * keeps the file alive, with its blocks and its old path; writeback then puts them in
     * lost+found (unlink) or writes them over the renamed file that now has that path
     * (rename). Tolerated: daemon-only crash points never fire inside an unlink or a rename
     * over a file. See {@link #daemonCrashInUnlinkLosesReturnedWrites} and {@link
     * #daemonCrashInRenameOverFile}.
     */
    DAEMON_CRASH_BETWEEN_RECORD_AND_DEAD_MARK,
    /**
     * The old unlinking-mark tear, now in {@code JournalApplier.placed}: storing a file's new
     * place rewrites its version of the open epoch in place ({@code DataPath.storeFileMeta(f,
     * true)}; {@code CacheLayout.storeFileVersion} frees it first), so a daemon killed in
     * between leaves the file no version of the open epoch, and same-boot recovery drops the
     * writes of that epoch that had returned. Reached when writeback applies records while
     * writes are uncommitted (the writeback thread does). Worked around as {@link
     * #RECORD_APPLIED_TO_DEAD_FILE_NOT_PLACED}: the workload's journal steps commit first.
     * See {@link #daemonCrashInPlacedKeepsReturnedWrites}.
     */
    OPEN_EPOCH_VERSION_TORN_BY_REWRITE
  }

  /** What a run simulates, and the known engine bugs it tolerates. */
  record Options(RenameModel renameModel, Set<KnownBug> tolerated) {
    boolean tolerates(KnownBug bug) {
      return tolerated.contains(bug);
    }

    @Override
    public String toString() {
      return renameModel + ", tolerating " + tolerated;
    }

    String properties() {
      StringBuilder t = new StringBuilder();
      for (KnownBug b : tolerated) {
        t.append(t.length() == 0 ? "" : ",").append(b);
      }
      return " -Dwcfs.bothmedia.model=" + renameModel + " -Dwcfs.bothmedia.tolerate="
          + (t.length() == 0 ? "none" : t);
    }

    /** These options, or those the system properties name. */
    Options fromProperties() {
      RenameModel m = RenameModel.valueOf(System.getProperty("wcfs.bothmedia.model",
          renameModel.name()));
      String t = System.getProperty("wcfs.bothmedia.tolerate");
      if (t == null) {
        return new Options(m, tolerated);
      }
      Set<KnownBug> bugs = EnumSet.noneOf(KnownBug.class);
      for (String b : t.split(",")) {
        if (!b.isBlank() && !b.equals("none")) {
          bugs.add(KnownBug.valueOf(b.trim()));
        }
      }
      return new Options(m, bugs);
    }
  }

  /** Every known bug tolerated: what the passing runs use. */
  static final Set<KnownBug> ALL_KNOWN = EnumSet.allOf(KnownBug.class);

  /** A new file as the mount makes it: a journaled create, applied by writeback or recovery. */
  static void create(WriteCache cache, String path) throws IOException {
    cache.close(cache.create(path, 0600, 0, 0, true));
  }

  @Test
  @DisplayName("both media crash anywhere (renames journaled, as on ext4/xfs): every"
      + " acknowledged fsync holds, nothing torn or invented, names as of a commit")
  void journaledRenames() throws IOException {
    runAll("journaledRenames", new Options(RenameModel.JOURNALED, EnumSet.noneOf(KnownBug.class)));
  }

  @Test
  @DisplayName("both media crash anywhere (POSIX-strict renames: each directory durable with"
      + " its own fsync)")
  void splitRenames() throws IOException {
    runAll("splitRenames", new Options(RenameModel.SPLIT, EnumSet.noneOf(KnownBug.class)));
  }

  private static void runAll(String method, Options defaults) throws IOException {
    Options o = defaults.fromProperties();
    String fixed = System.getProperty("wcfs.bothmedia.seed");
    int workloads = Integer.getInteger("wcfs.bothmedia.workloads", WORKLOADS); // soak runs
    Stats stats = new Stats();
    long start = System.nanoTime();
    if (fixed != null) {
      new Workload(Long.parseLong(fixed), o, stats, method).run(CRASHES_PER_WORKLOAD);
    } else {
      for (int w = 0; w < workloads; w++) {
        new Workload(BASE_SEED + w, o, stats, method + " -Dwcfs.bothmedia.workloads="
            + workloads).run(CRASHES_PER_WORKLOAD);
      }
    }
    System.out.printf("BothMediaCrashTest (%s): %s in %.1f s%n", o, stats,
        (System.nanoTime() - start) / 1e9);
  }

  // ---- engine bugs: reproductions -------------------------------------------------------------

  private static Set<KnownBug> allBut(KnownBug bug) {
    Set<KnownBug> s = EnumSet.allOf(KnownBug.class);
    s.remove(bug);
    return s;
  }

  /**
   * The seeds' workloads, one known bug no longer tolerated; fails with the first failure. More
   * than one seed: whether a workload reaches the bug may depend on the order of the files in
   * a writeback batch (the engine takes it from identity hash codes), so one seed alone may miss
   * it in another JVM; the deterministic reproductions never do.
   */
  private static void runSeeds(RenameModel model, KnownBug bug, long... seeds)
      throws IOException {
    runSeeds(model, allBut(bug), seeds);
  }

  private static void runSeeds(RenameModel model, Set<KnownBug> tolerated, long... seeds)
      throws IOException {
    for (long seed : seeds) {
      new Workload(seed, new Options(model, tolerated), new Stats(),
          model == RenameModel.SPLIT ? "splitRenames" : "journaledRenames")
          .run(CRASHES_PER_WORKLOAD);
    }
  }

  /** A fresh cache over {@code store}: format, open in a new boot. */
  private static WriteCache fresh(CrashingMemory mem, PowerLossBackingStore store, long boot)
      throws IOException {
    CacheLayout.format(mem, BS, store.identity());
    return WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
  }

  /** After recovery: every record applied, none left for the overlay, nothing in lost+found. */
  private static void assertSettled(WriteCache c, PowerLossBackingStore store, String what) {
    for (String dir : List.of("", "d", "e")) {
      assertEquals(Map.of(), c.overlayChildren(dir), what + ": records recovery did not apply"
          + " (in '" + dir + "')");
    }
    for (String p : store.files().keySet()) {
      assertTrue(!p.startsWith(WriteCache.LOST_AND_FOUND), what + ": " + p);
    }
  }

  /**
   * The workaround for {@link KnownBug#RENAME_REAPPLIED_OPENS_GONE_SOURCE}, before recovery: a
   * committed RENAME of the oldest batch of records (the only one a crash can cut: the next
   * one starts after its records are freed) whose rename(2) already happened (the source gone,
   * the target there) while the file's slot still says the source is undone in the backing
   * directory, durably. {@code boot}: the one recovery runs in. Returns how many.
   */
  static int undoAppliedRenames(CrashingMemory mem, PowerLossBackingStore store, long boot)
      throws IOException {
    CacheLayout layout = CacheLayout.open(mem, null);
    CacheScan scan = CacheScan.of(layout, layout.boot() == boot); // as recovery will see it
    Set<String> names = new java.util.HashSet<>();
    Set<Integer> slots = new java.util.HashSet<>();
    int undone = 0;
    for (CacheLayout.Record r : scan.records) { // Journal.takeBatch: no name or file twice
      if (names.contains(r.path1()) || (r.path2() != null && names.contains(r.path2()))
          || (r.fileSlot() >= 0 && slots.contains(r.fileSlot()))) {
        break;
      }
      names.add(r.path1());
      if (r.path2() != null) {
        names.add(r.path2());
      }
      slots.add(r.fileSlot());
      CacheScan.FileRecord moving = r.fileSlot() >= 0 ? scan.files[r.fileSlot()] : null;
      if (r.op() == CacheLayout.Op.RENAME && moving != null && !moving.v().absent()
          && r.path1().equals(moving.v().path()) // else its new place is committed: no bug
          && store.stat(r.path1()) == null && store.stat(r.path2()) != null) {
        store.rename(r.path2(), r.path1());
        store.syncDirectory(BackingStore.parentOf(r.path1()));
        store.syncDirectory(BackingStore.parentOf(r.path2()));
        undone++;
      }
    }
    return undone;
  }

  @Test
  void renameAppliedBeforeCrashIsStuck() throws IOException {
    for (int k = 0; ; k++) {
      PowerLossBackingStore store = new PowerLossBackingStore("reapply", RenameModel.JOURNALED);
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
      create(c, "a");
      byte[] data = new byte[2 * BS + 5];
      new Random(k).nextBytes(data);
      CacheFixture.write(c, "a", 0, data);
      c.flush(10_000); // "a" and its data durable in the backing directory
      c.rename("a", "b"); // within one directory: atomic in any rename model
      c.commit(); // acknowledged: the rename, a record in the cache
      mem.crashAfter(k);
      try {
        c.flush(10_000); // applies it: rename(2), the directory's fsync, the record freed
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the power went out here
      }
      boolean crashed = mem.hasCrashed();
      mem.crashAfter(-1);
      CrashingMemory after = mem.crash(new Random(k));
      c.abandon();
      store.powerLoss();
      c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
          CacheFixture.nextBoot());
      String what = "power loss at cache-memory operation " + k + " of the writeback, "
          + store.tree();
      assertSettled(c, store, what);
      assertEquals(List.of("b"), List.copyOf(store.files().keySet()), what);
      assertArrayEquals(data, CacheFixture.read(c, "b"), what);
      c.close();
      if (!crashed) {
        return; // the writeback ran to its end
      }
    }
  }

  /**
   * The workaround for {@link KnownBug#RECORD_FREES_TORN_BY_POWER_LOSS}, before recovery: if
   * the committed records left are not contiguous in the ring (a later record's free survived
   * a power loss, an earlier one's did not), the records before the last gap are freed, as the
   * cut batch would have freed them. Returns how many.
   */
  static int finishTornRecordFrees(CrashingMemory mem) throws IOException {
    CacheLayout layout = CacheLayout.open(mem, null);
    List<CacheLayout.Record> records = CacheScan.of(layout).records;
    int capacity = layout.geometry().journalRecords();
    int lastGap = 0;
    for (int i = 1; i < records.size(); i++) {
      if (records.get(i).index() != (records.get(i - 1).index() + 1) % capacity) {
        lastGap = i;
      }
    }
    for (int i = 0; i < lastGap; i++) {
      layout.storeRecordFree(records.get(i).index());
      layout.flushRecord(records.get(i).index());
    }
    if (lastGap > 0) {
      mem.commit();
    }
    return lastGap;
  }

  @Test
  void powerLossWhileFreeingRecordsRefusesMount() throws IOException {
    for (int k = 0; ; k++) {
      PowerLossBackingStore store = new PowerLossBackingStore("frees", RenameModel.JOURNALED);
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
      create(c, "a");
      create(c, "b");
      create(c, "c");
      c.commit(); // three records, ring indexes 0, 1, 2: one batch
      CacheLayout layout = CacheLayout.open(mem, null);
      long middle = layout.recordOffset(1);
      mem.crashAfter(k);
      try {
        c.flush(10_000); // applies the batch, then frees its records
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the power went out here
      }
      boolean crashed = mem.hasCrashed();
      mem.crashAfter(-1);
      // Of the words not committed yet, the memory keeps the middle record's (its free, if
      // it was stored) and nothing else.
      CrashingMemory after = mem.crash(offset -> offset == middle);
      c.abandon();
      store.powerLoss();
      String what = "power loss at cache-memory operation " + k + " of the writeback";
      c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
          CacheFixture.nextBoot());
      assertSettled(c, store, what);
      assertEquals(List.of("a", "b", "c"), List.copyOf(store.files().keySet()), what);
      c.close();
      if (!crashed) {
        return;
      }
    }
  }

  @Test
  void createAppliedToDeadFileLosesData() throws IOException {
    PowerLossBackingStore store = new PowerLossBackingStore("revive", RenameModel.JOURNALED);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
    WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
    create(c, "a");
    byte[] data = new byte[1618];
    new Random(2).nextBytes(data);
    CacheFixture.write(c, "a", 0, data);
    c.commit(); // acknowledged: "a" and its data
    c.unlink("a"); // journaled, not committed: the file is dead in this epoch
    c.journalStep(); // writeback applies the committed CREATE: "a" in the backing directory
    CrashingMemory after = mem.crash(new Random(1)); // the unlink never committed
    c.abandon();
    store.powerLoss();
    c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
    assertSettled(c, store, "recovery");
    // The unlink returned but was not acknowledged: the engine may have committed it (applying
    // the CREATE commits the file's new place, and with it the open epoch). Either it
    // happened, or 'a' is there with every byte acknowledged; never lost+found, never less.
    if (store.stat("a") != null) {
      assertArrayEquals(data, CacheFixture.read(c, "a"), "'a' and its data were acknowledged"
          + " by a commit, its unlink was not");
    } else {
      WriteCache recovered = c;
      assertThrows(java.nio.file.NoSuchFileException.class, () -> recovered.open("a"));
    }
    c.close();
  }

  @Test
  void renameAppliedToDeadFileGoesToLostAndFound() throws IOException {
    PowerLossBackingStore store = new PowerLossBackingStore("moved", RenameModel.JOURNALED);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
    WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
    create(c, "a");
    CacheFixture.write(c, "a", 0, new byte[700]);
    c.flush(10_000); // "a" in the backing directory, 700 zeros, durable
    byte[] data = new byte[700];
    new Random(3).nextBytes(data);
    CacheFixture.write(c, "a", 0, data);
    c.rename("a", "b");
    c.commit(); // acknowledged: "b" with the data, a record and a block in the cache
    c.unlink("b"); // journaled, not committed: the file is dead in this epoch
    c.journalStep(); // writeback applies the committed RENAME
    CrashingMemory after = mem.crash(new Random(1)); // the unlink never committed
    c.abandon();
    store.powerLoss();
    c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
    assertSettled(c, store, "recovery");
    if (store.stat("b") != null) { // as above: the unlink happened, or not at all
      assertArrayEquals(data, CacheFixture.read(c, "b"), "'b' and its data were acknowledged by"
          + " a commit, its unlink was not");
    } else {
      WriteCache recovered = c;
      assertThrows(java.nio.file.NoSuchFileException.class, () -> recovered.open("b"));
    }
    assertEquals(null, store.stat("a"));
    c.close();
  }

  @Test
  void createAppliedToDeadFileLeaksName() throws IOException {
    PowerLossBackingStore store = new PowerLossBackingStore("elide", RenameModel.JOURNALED);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
    WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
    create(c, "a");
    c.commit(); // the CREATE committed
    c.unlink("a"); // the UNLINK journaled, not committed: the file is dead in this epoch
    c.journalStep(); // writeback applies the committed CREATE (and may commit the unlink)
    c.commit(); // acknowledged: "a" is gone
    CrashingMemory after = mem.crash(new Random(1));
    c.abandon();
    store.powerLoss();
    c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
        CacheFixture.nextBoot());
    assertSettled(c, store, "recovery");
    assertEquals(List.of(), List.copyOf(store.files().keySet()), "'a' was unlinked, and that"
        + " acknowledged by a commit");
    c.close();
  }

  @DisplayName("after a daemon crash, recovery makes durable the backing changes the dead"
      + " daemon left for its next commit")
  @Test
  void daemonCrashLosesPendingBackingChanges() throws IOException {
    PowerLossBackingStore store = new PowerLossBackingStore("pending", RenameModel.JOURNALED);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
    long boot = CacheFixture.nextBoot();
    WriteCache c = fresh(mem, store, boot);
    create(c, "a");
    c.flush(10_000); // "a" in the backing directory, durable; nothing cached
    c.truncate("a", 3000); // a size-only change of the backing file, fsync'd by the next commit
    store.mkdir("m"); // a directory as the fs layer makes it: in the backing directory, durable
    c.namespaceChanged("m"); // with the next commit's directory fsyncs
    c.abandon(); // the daemon is killed; the machine and its page cache stay up
    mem = mem.processCrash();
    store.processCrash();
    c = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS), boot);
    assertEquals(3000, CacheFixture.read(c, "a").length);
    c.commit(); // "makes every write that returned before this call durable, and every name"
    c.flush(10_000);
    c.abandon();
    store.powerLoss();
    org.junit.jupiter.api.Assertions.assertAll(
        () -> assertNotNull(store.stat("m"), "m was made before a commit and a flush that"
            + " returned"),
        () -> assertEquals(3000, store.stat("a").size(), "a was extended before a commit and a"
            + " flush that returned"));
  }

  /**
   * Sweeps a crash over every backing operation of the writeback that applies a committed
   * rename from the root into a subdirectory, then loses power keeping exactly what is durable:
   * the rename was acknowledged, so recovery must finish it.
   */
  private static void crossDirectoryRenameSweep(RenameModel model) throws IOException {
    crossDirectoryRenameSweep(model, false);
  }

  /**
   * {@code createInSource}: a file created in the rename's source directory first, applied in
   * the same batch: that directory gains a name too, and must still be fsync'd after the
   * rename's target.
   */
  private static void crossDirectoryRenameSweep(RenameModel model, boolean createInSource)
      throws IOException {
    for (int n = 0; ; n++) {
      PowerLossBackingStore store = new PowerLossBackingStore("rename", model);
      store.mkdir("e");
      store.syncDirectory("");
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
      create(c, "a");
      byte[] data = new byte[3 * BS + 5];
      new Random(n).nextBytes(data);
      CacheFixture.write(c, "a", 0, data);
      c.flush(10_000); // "a" and its data durable in the backing directory
      if (createInSource) {
        create(c, "c");
      }
      c.rename("a", "e/a");
      c.commit(); // acknowledged: the rename, a record in the cache
      store.crashAfter(n);
      try {
        c.flush(10_000); // applies it: rename(2), then the two directories' fsyncs
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the power went out here
      }
      boolean crashed = store.hasCrashed();
      CrashingMemory after = mem.crash(new Random(n));
      c.abandon();
      store.powerLoss();
      String what = model + ", crash at backing operation " + n + " of the writeback, "
          + store.tree();
      // Under either name, or both (a second rename finishes that): never under neither.
      assertTrue(store.stat("a") != null || store.stat("e/a") != null, what + ": the file is"
          + " under neither name");
      undoAppliedRenames(after, store, 0); // RENAME_REAPPLIED_OPENS_GONE_SOURCE, not this test's
      c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
          CacheFixture.nextBoot());
      assertSettled(c, store, what);
      assertEquals(createInSource ? List.of("c", "e/a") : List.of("e/a"),
          List.copyOf(store.files().keySet()), what);
      assertArrayEquals(data, CacheFixture.read(c, "e/a"), what);
      c.close();
      if (!crashed) {
        return; // the writeback ran to its end
      }
    }
  }

  @Test
  @DisplayName("a power loss while writeback applies a rename across directories (POSIX-strict"
      + " backing): recovery finishes it")
  void crashInCrossDirectoryRenameLosesFile() throws IOException {
    crossDirectoryRenameSweep(RenameModel.SPLIT);
  }

  @Test
  @DisplayName("the same with a file created in the rename's source directory in the same"
      + " batch: that directory gained a name too, and is still fsync'd after the target")
  void crashInCrossDirectoryRenameWithCreateInSource() throws IOException {
    crossDirectoryRenameSweep(RenameModel.SPLIT, true);
  }

  @Test
  @DisplayName("the same sweep where a rename is one journal transaction (ext4, xfs)")
  void crashInCrossDirectoryRenameJournaled() throws IOException {
    crossDirectoryRenameSweep(RenameModel.JOURNALED);
  }

  /**
   * Two committed renames over files, across the same two directories both ways ("a" into
   * e/, e/q out of it), applied by one writeback swept by a crash over every backing
   * operation, then a power loss keeping exactly what is durable: both renames were
   * acknowledged, so after recovery each name holds the renamed file's data, not the file it
   * replaced.
   */
  @Test
  @DisplayName("a power loss while writeback applies two renames across the same directories"
      + " both ways (POSIX-strict backing): recovery finishes both")
  void crashInCrossingRenamesLosesFile() throws IOException {
    for (int n = 0; ; n++) {
      PowerLossBackingStore store = new PowerLossBackingStore("crossing", RenameModel.SPLIT);
      store.mkdir("e");
      store.syncDirectory("");
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
      Map<String, byte[]> data = new TreeMap<>();
      for (String name : List.of("a", "b", "e/a", "e/q")) {
        byte[] d = new byte[BS + 7];
        Arrays.fill(d, (byte) name.hashCode());
        data.put(name, d);
        create(c, name);
        CacheFixture.write(c, name, 0, d);
      }
      c.flush(10_000); // all four durable in the backing directory
      c.rename("a", "e/a"); // over e/a: the root loses a name, e/ gains one
      c.rename("e/q", "b"); // over b: e/ loses a name, the root gains one
      c.commit(); // acknowledged: both renames, records in the cache
      store.crashAfter(n);
      try {
        c.flush(10_000); // applies them
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the power went out here
      }
      boolean crashed = store.hasCrashed();
      CrashingMemory after = mem.crash(new Random(n));
      c.abandon();
      store.powerLoss();
      String what = "crash at backing operation " + n + " of the writeback, " + store.tree();
      undoAppliedRenames(after, store, 0); // RENAME_REAPPLIED_OPENS_GONE_SOURCE, not this test's
      c = WriteCache.openManual(after, store, CacheFixture.manualConfig(BS),
          CacheFixture.nextBoot());
      assertSettled(c, store, what);
      assertEquals(List.of("b", "e/a"), List.copyOf(store.files().keySet()), what);
      assertArrayEquals(data.get("a"), CacheFixture.read(c, "e/a"), what + ": e/a");
      assertArrayEquals(data.get("e/q"), CacheFixture.read(c, "b"), what + ": b");
      c.close();
      if (!crashed) {
        return; // the writeback ran to its end
      }
    }
  }

  @Test
  @DisplayName("fsync order: each rename's target directory before its source, a chain"
      + " included; directories in a cycle last, in the given order")
  void fsyncOrderPutsRenameTargetsFirst() {
    Set<String> dirs = new java.util.LinkedHashSet<>(List.of("d", "", "e", "f"));
    // a -> e/a (target e, source ""), d/x -> b (target "", source d)
    assertEquals(List.of("e", "", "d", "f"), DirectorySyncs.fsyncOrder(dirs,
        List.of(new String[] {"e", ""}, new String[] {"", "d"})));
    assertEquals(List.of("e", "f", "d", ""), DirectorySyncs.fsyncOrder(dirs,
        List.of(new String[] {"d", ""}, new String[] {"", "d"})), "a cycle: the rest first");
    assertEquals(List.of("d", "", "e", "f"), DirectorySyncs.fsyncOrder(dirs, List.of()));
  }

  @Test
  @DisplayName("a power loss in the commit after a synchronous rename of a directory across"
      + " directories (POSIX-strict backing): the directory is under one name or both")
  void crashInCrossDirectoryDirectoryRenameLosesIt() throws IOException {
    directoryRenameSweep(false);
  }

  @Test
  @DisplayName("the same with a directory made in the rename's source directory before it,"
      + " in the same commit")
  void crashInCrossDirectoryDirectoryRenameWithMkdirInSource() throws IOException {
    directoryRenameSweep(true);
  }

  private static void directoryRenameSweep(boolean mkdirInSource) throws IOException {
    for (int n = 0; ; n++) {
      PowerLossBackingStore store = new PowerLossBackingStore("dirrename", RenameModel.SPLIT);
      store.mkdir("e");
      store.mkdir("m"); // directories are not journaled: renamed in the backing directory
      store.createFile("m/f");
      store.syncDirectory("m");
      store.syncDirectory("");
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      WriteCache c = fresh(mem, store, CacheFixture.nextBoot());
      if (mkdirInSource) {
        store.mkdir("n"); // as the fs layer makes a directory: the root gained a name too
        c.namespaceChanged("n");
      }
      c.rename("m", "e/m"); // at once; the next commit fsyncs both directories
      store.crashAfter(n);
      try {
        c.commit();
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the power went out here
      }
      boolean crashed = store.hasCrashed();
      c.abandon();
      store.powerLoss();
      assertTrue(store.stat("m/f") != null || store.stat("e/m/f") != null, "crash at backing"
          + " operation " + n + " of the commit: the directory is under neither name: "
          + store.tree());
      if (!crashed) {
        return; // the commit ran to its end
      }
    }
  }

  @DisplayName("a daemon killed in an extending write: after same-boot recovery the bytes"
      + " past the recovered end of file read as zeros when the file grows again")
  @Test
  void daemonCrashInExtendingWriteLeavesBytesPastEof() throws IOException {
    byte[] first = new byte[665];
    new Random(1).nextBytes(first);
    byte[] second = new byte[1228];
    Arrays.fill(second, (byte) 0x5a);
    for (int k = 0; ; k++) {
      PowerLossBackingStore store = new PowerLossBackingStore("eof", RenameModel.JOURNALED);
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      long boot = CacheFixture.nextBoot();
      WriteCache c = fresh(mem, store, boot);
      create(c, "c");
      c.flush(10_000); // in the backing directory (recovery writes a new file back whole)
      CacheFixture.write(c, "c", 0, first);
      mem.crashAfter(k);
      try {
        CacheFixture.write(c, "c", 344, second); // extends the file to 1572
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the daemon died here
      }
      if (!mem.hasCrashed()) {
        mem.crashAfter(-1);
        c.close();
        return; // the write ran to its end
      }
      CrashingMemory next = mem.processCrash();
      c.abandon();
      store.processCrash();
      c = WriteCache.openManual(next, store, CacheFixture.manualConfig(BS), boot);
      if (CacheFixture.read(c, "c").length == first.length) { // did not land: extend by a hole
        CacheFixture.write(c, "c", 1000, new byte[] {1});
        byte[] got = CacheFixture.read(c, "c");
        assertArrayEquals(new byte[1000 - first.length], Arrays.copyOfRange(got, first.length,
            1000), "daemon killed at cache-memory operation " + k + " of the write: the hole"
            + " past the recovered end of file must read zeros");
      }
      c.abandon();
    }
  }

  /**
   * A daemon killed at every cache-memory operation of an unlink of a file whose writes
   * returned uncommitted (created and not yet in the backing directory, or already there):
   * after same-boot recovery the unlink happened, or the file is there with those writes; a
   * full writeback then leaves exactly that, nothing in lost+found.
   */
  @Test
  @DisplayName("a daemon killed in an unlink: the unlink happened, or the file is there with"
      + " every write that returned")
  void daemonCrashInUnlinkLosesReturnedWrites() throws IOException {
    for (boolean placed : new boolean[] {false, true}) {
      byte[] data = new byte[629];
      Arrays.fill(data, (byte) 7);
      byte[] expected = CacheFixture.apply(new byte[BS], 106, data);
      for (int k = 0; ; k++) {
        PowerLossBackingStore store = new PowerLossBackingStore("unlink", RenameModel.JOURNALED);
        CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
        long boot = CacheFixture.nextBoot();
        WriteCache c = fresh(mem, store, boot);
        create(c, "a");
        CacheFixture.write(c, "a", 0, new byte[BS]);
        if (placed) {
          c.flush(10_000);
        } else {
          c.commit();
        }
        CacheFixture.write(c, "a", 106, data); // returned, not committed
        mem.crashAfter(k);
        try {
          c.unlink("a");
        } catch (CrashingMemory.SimulatedCrash | IOException e) {
          // the daemon died here
        }
        if (!mem.hasCrashed()) {
          mem.crashAfter(-1);
          c.close();
          break; // the unlink ran to its end
        }
        CrashingMemory next = mem.processCrash();
        c.abandon();
        store.processCrash();
        c = WriteCache.openManual(next, store, CacheFixture.manualConfig(BS), boot);
        String what = (placed ? "in the backing directory" : "created in the cache")
            + ", daemon killed at cache-memory operation " + k + " of the unlink";
        assertSettled(c, store, what);
        boolean there = store.stat("a") != null;
        if (there) {
          assertArrayEquals(expected, CacheFixture.read(c, "a"), what);
        }
        c.flush(10_000);
        assertSettled(c, store, what + ", then a full writeback");
        assertEquals(there ? List.of("a") : List.of(), List.copyOf(store.files().keySet()),
            what + ", then a full writeback");
        if (there) {
          assertArrayEquals(expected, store.content("a"), what + ", then a full writeback");
        }
        c.close();
      }
    }
  }

  /**
   * The same for a rename over a file whose writes returned uncommitted: after same-boot
   * recovery the rename happened (the target holds the renamed file's data) or not (both
   * files as they were), and a full writeback leaves exactly that.
   */
  @Test
  @DisplayName("a daemon killed in a rename over a file: the rename happened or not, every"
      + " write that returned is there, nothing goes to the wrong file")
  void daemonCrashInRenameOverFile() throws IOException {
    for (boolean placed : new boolean[] {false, true}) {
      byte[] moving = new byte[700];
      Arrays.fill(moving, (byte) 3);
      byte[] data = new byte[629];
      Arrays.fill(data, (byte) 7);
      byte[] victim = CacheFixture.apply(new byte[BS], 106, data);
      for (int k = 0; ; k++) {
        PowerLossBackingStore store = new PowerLossBackingStore("over", RenameModel.JOURNALED);
        CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
        long boot = CacheFixture.nextBoot();
        WriteCache c = fresh(mem, store, boot);
        create(c, "a");
        create(c, "b");
        CacheFixture.write(c, "a", 0, moving);
        CacheFixture.write(c, "b", 0, new byte[BS]);
        if (placed) {
          c.flush(10_000);
        } else {
          c.commit();
        }
        CacheFixture.write(c, "b", 106, data); // returned, not committed
        mem.crashAfter(k);
        try {
          c.rename("a", "b");
        } catch (CrashingMemory.SimulatedCrash | IOException e) {
          // the daemon died here
        }
        if (!mem.hasCrashed()) {
          mem.crashAfter(-1);
          c.close();
          break; // the rename ran to its end
        }
        CrashingMemory next = mem.processCrash();
        c.abandon();
        store.processCrash();
        c = WriteCache.openManual(next, store, CacheFixture.manualConfig(BS), boot);
        String what = (placed ? "in the backing directory" : "created in the cache")
            + ", daemon killed at cache-memory operation " + k + " of the rename";
        assertSettled(c, store, what);
        boolean renamed = store.stat("a") == null;
        assertArrayEquals(renamed ? moving : victim, CacheFixture.read(c, "b"), what);
        c.flush(10_000);
        assertSettled(c, store, what + ", then a full writeback");
        assertEquals(renamed ? List.of("b") : List.of("a", "b"),
            List.copyOf(store.files().keySet()), what + ", then a full writeback");
        assertArrayEquals(renamed ? moving : victim, store.content("b"), what
            + ", then a full writeback");
        if (!renamed) {
          assertArrayEquals(moving, store.content("a"), what + ", then a full writeback");
        }
        c.close();
      }
    }
  }


  @Test
  @DisplayName("a daemon killed while writeback applies a CREATE, after writes to the file that"
      + " returned uncommitted: after same-boot recovery the file has every write")
  void daemonCrashInPlacedKeepsReturnedWrites() throws IOException {
    byte[] data = new byte[1300];
    new Random(4).nextBytes(data);
    for (int k = 0; ; k++) {
      PowerLossBackingStore store = new PowerLossBackingStore("placed", RenameModel.JOURNALED);
      CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
      long boot = CacheFixture.nextBoot();
      WriteCache c = fresh(mem, store, boot);
      create(c, "a");
      CacheFixture.write(c, "a", 0, new byte[100]);
      c.commit(); // the CREATE committed; the file not in the backing directory yet
      CacheFixture.write(c, "a", 0, data); // returned, not committed: a version of this epoch
      mem.crashAfter(k);
      try {
        c.journalStep(); // writeback applies the CREATE and stores the file's new place
      } catch (CrashingMemory.SimulatedCrash | IOException e) {
        // the daemon died here
      }
      if (!mem.hasCrashed()) {
        mem.crashAfter(-1);
        c.close();
        return; // the step ran to its end
      }
      CrashingMemory next = mem.processCrash();
      c.abandon();
      store.processCrash();
      c = WriteCache.openManual(next, store, CacheFixture.manualConfig(BS), boot);
      String what = "daemon killed at cache-memory operation " + k + " of the journal step";
      assertSettled(c, store, what);
      assertArrayEquals(data, CacheFixture.read(c, "a"), what);
      c.close();
    }
  }

  // ---- the open bugs in the random workload: seeds that reach them ---------------------------

  @Test
  void renameAppliedBeforeCrashIsStuckRandomWorkload() throws IOException {
    runSeeds(RenameModel.JOURNALED, KnownBug.RENAME_REAPPLIED_OPENS_GONE_SOURCE, 99539720L,
        99539721L, 99539722L, 99539723L);
  }

  @Test
  void powerLossWhileFreeingRecordsRefusesMountRandomWorkload() throws IOException {
    runSeeds(RenameModel.JOURNALED, KnownBug.RECORD_FREES_TORN_BY_POWER_LOSS, 99539744L,
        99539772L, 99539780L);
  }

  @Test
  void recordAppliedToDeadFileRandomWorkload() throws IOException {
    Set<KnownBug> tolerated = allBut(KnownBug.RECORD_APPLIED_TO_DEAD_FILE_NOT_PLACED);
    tolerated.remove(KnownBug.OPEN_EPOCH_VERSION_TORN_BY_REWRITE); // the same workaround
    runSeeds(RenameModel.JOURNALED, tolerated, 99539727L, 99539731L, 99539733L, 99539737L,
        99539734L, 99539749L, 99539762L, 99539763L, 99539766L, 99539771L);
  }

  @Test
  void daemonCrashBetweenRecordAndDeadMarkRandomWorkload() throws IOException {
    runSeeds(RenameModel.JOURNALED, KnownBug.DAEMON_CRASH_BETWEEN_RECORD_AND_DEAD_MARK,
        99539721L, 99539735L, 99539736L, 99539747L);
  }

  /** What a run did, for the log line (and to see that every kind of crash happens). */
  static final class Stats {
    int crashPoints;
    int betweenOps;
    int memoryArmed;
    int memoryFired;
    int backingArmed;
    int backingFired;
    int daemonCrashes;
    int recoveryCrashes;
    int flushChecks;
    int flushPowerLossChecks;
    int ops;
    /** Recoveries that found an older namespace than the newest one since the last commit. */
    int olderNamespaces;
    /** Recoveries that found the namespace of the last acknowledged commit exactly. */
    int ackedNamespaces;
    int identityChecks;
    /** Recoveries that found a file under two names in the backing directory (SPLIT). */
    int bothNames;
    /** Renames undone before recovery (the RENAME_REAPPLIED_OPENS_GONE_SOURCE workaround). */
    int undoneRenames;
    /** Record frees finished before recovery (RECORD_FREES_TORN_BY_POWER_LOSS). */
    int finishedFrees;
    /** Unlinks and renames over a file a daemon-only crash was kept out of. */
    int sparedNamespaceOps;
    long recordsApplied;
    long createsElided;
    long fileSyncs;
    long directorySyncs;

    @Override
    public String toString() {
      return crashPoints + " crash points (" + betweenOps + " between operations, "
          + memoryFired + "/" + memoryArmed + " armed in cache-memory operations fired, "
          + backingFired + "/" + backingArmed + " armed in backing operations fired, "
          + daemonCrashes + " of them daemon crashes in the same boot; " + recoveryCrashes
          + " more during recovery), " + ops + " operations, " + flushChecks
          + " full writebacks checked (" + flushPowerLossChecks + " then power-lost), "
          + recordsApplied + " journal records applied (" + createsElided + " creates elided), "
          + fileSyncs + " backing file fsyncs, " + directorySyncs + " directory fsyncs; "
          + "recovered namespace: " + ackedNamespaces + " times the acknowledged one, "
          + olderNamespaces + " times one older than the newest; " + bothNames
          + " recoveries found a file under two names (a rename cut between its directories'"
          + " fsyncs) and finished it; " + identityChecks
          + " backing inode identities checked; known bugs worked around: " + undoneRenames
          + " applied renames undone before recovery, " + finishedFrees + " torn record frees"
          + " finished, " + sparedNamespaceOps + " unlinks and renames over a file spared a daemon crash";
    }
  }

  /**
   * A file as the model knows it: a model id (a file created through the cache has no backing
   * inode until its CREATE is applied, and may get another one if a crash undoes that).
   */
  static final class MFile {
    final int id;
    /** Every state since the last acknowledged commit, the committed one first. */
    List<byte[]> states = new ArrayList<>();
    /**
     * Its backing inode, once it is known to be durable (seen after a recovery or a full
     * writeback), else 0: the engine never gives a placed file another one.
     */
    long ino;
    /** The first state an operation in flight added, or -1: the states before it returned. */
    int inFlightFrom = -1;

    MFile(int id) {
      this.id = id;
      states.add(new byte[0]);
    }

    byte[] last() {
      return states.get(states.size() - 1);
    }

    @Override
    public String toString() {
      StringBuilder sizes = new StringBuilder();
      for (byte[] s : states) {
        sizes.append(sizes.length() == 0 ? "" : ",").append(s.length);
      }
      return "#" + id + (ino == 0 ? "" : "(ino " + ino + ")") + "[" + sizes + "]";
    }
  }

  @FunctionalInterface
  interface IoAction {
    void run() throws IOException;
  }

  /** One seed's workload: one cache, one backing store, many crashes. */
  static final class Workload {
    private final long seed;
    private final Random rnd;
    private final Options options;
    private final RenameModel renameModel;
    private final Stats stats;
    /** The test method (and properties) whose run this workload is part of. */
    private final String run;
    private final PowerLossBackingStore store;
    private final CacheConfig cfg = CacheFixture.manualConfig(BS);
    private CrashingMemory mem;
    private WriteCache cache;
    /** The boot the machine is in: a daemon crash keeps it, a power loss starts another. */
    private long boot;
    private int nextId;
    /** The names now (after the operations that returned, and the one in flight). */
    private TreeMap<String, MFile> ns = new TreeMap<>();
    /**
     * Every namespace since the last acknowledged commit, that one first, the newest last (a
     * namespace operation appends the namespace it makes before it is called). The engine
     * commits on its own too (a truncate, a full cache or journal, a rename's writeback), so a
     * power loss may leave any of them; a daemon crash the newest, or the one before it if a
     * namespace operation was in flight.
     */
    private List<TreeMap<String, MFile>> namespaces = new ArrayList<>();
    /** A namespace operation was called and has not returned. */
    private boolean namespaceOpInFlight;
    /** The armed crash is a daemon crash (kill -9), not a power loss. */
    private boolean daemonArmed;
    /** The last operations, crashes and checks (across crash points), for failure messages. */
    private final Deque<String> log = new ArrayDeque<>();
    private String where = "";

    Workload(long seed, Options options, Stats stats, String run) {
      this.run = run;
      this.seed = seed;
      this.rnd = new Random(seed);
      this.options = options;
      this.renameModel = options.renameModel();
      this.stats = stats;
      this.store = new PowerLossBackingStore("seed" + seed, renameModel);
    }

    void run(int crashes) throws IOException {
      try {
        runCrashes(crashes);
      } catch (IOException | RuntimeException e) {
        AssertionError error = failure("unexpected " + e);
        error.initCause(e);
        throw error;
      }
    }

    private void runCrashes(int crashes) throws IOException {
      for (String d : DIRS) {
        store.mkdir(d);
      }
      store.syncDirectory("");
      // Even workloads commit with commit records (a cache on a disk), odd ones in two steps
      // (persistent memory).
      mem = CacheFixture.memoryFor(NBLOCKS, BS).flushesDevice(seed % 2 == 0);
      CacheLayout.format(mem, BS, store.identity());
      boot = CacheFixture.nextBoot();
      cache = WriteCache.openManual(mem, store, cfg, boot);
      namespaces.add(new TreeMap<>(ns));
      for (int crash = 0; crash < crashes; crash++) {
        where = "seed " + seed + " (" + options + "), crash point " + crash;
        crashPoint();
      }
      where = "seed " + seed + " (" + options + "), end";
      flushAndCheckBacking(true);
      countJournal();
      cache.close();
      stats.fileSyncs += store.fileSyncs();
      stats.directorySyncs += store.directorySyncs();
    }

    private void note(String op) {
      log.addLast(op);
      if (log.size() > 120) {
        log.removeFirst();
      }
    }

    private AssertionError failure(String what) {
      StringBuilder nss = new StringBuilder();
      for (int i = 0; i < namespaces.size(); i++) {
        nss.append("\n    ").append(i).append(": ").append(namespaces.get(i));
      }
      return new AssertionError(where + ": " + what + "\n  last operations: " + log
          + "\n  namespaces since the last acknowledged commit:" + nss + "\n  backing: "
          + store.tree() + "\n  reproduce: the whole run (deterministic): -Dtest="
          + "BothMediaCrashTest#" + run + options.properties() + "\n  or this workload alone:"
          + " -Dtest=BothMediaCrashTest#" + run.split(" ")[0] + " -Dwcfs.bothmedia.seed=" + seed
          + options.properties() + " (the same unless the failure depends on the order of the"
          + " files in a writeback batch, which the engine takes from identity hash codes:"
          + " Writeback.collectBatch)");
    }

    private boolean crashed() {
      return mem.hasCrashed() || store.hasCrashed();
    }

    /** The journal counters of the cache about to be dropped. */
    private void countJournal() {
      CacheStats.JournalStats j = cache.stats().journal();
      stats.recordsApplied += j.applied();
      stats.createsElided += j.createsElided();
    }

    private void crashPoint() throws IOException {
      stats.crashPoints++;
      // 20% between operations, 30% in a cache-memory operation, 35% in a backing operation,
      // 15% a daemon crash in a cache-memory operation (or between operations if it does not
      // fire).
      int kind = rnd.nextInt(20);
      String how;
      if (kind < 4) {
        how = "between operations";
        stats.betweenOps++;
      } else if (kind < 10 || kind >= 17) {
        mem.crashAfter(rnd.nextInt(500));
        how = "in a cache-memory operation";
        stats.memoryArmed++;
      } else {
        store.crashAfter(rnd.nextInt(40));
        how = "in a backing operation";
        stats.backingArmed++;
      }
      boolean daemonOnly = kind >= 17;
      daemonArmed = daemonOnly;
      note("-- crash point " + stats.crashPoints);
      int ops = 1 + rnd.nextInt(40);
      for (int i = 0; i < ops && !crashed(); i++) {
        stats.ops++;
        try {
          step();
        } catch (Throwable t) {
          if (!crashed()) {
            AssertionError e = failure("operation failed without a crash: " + t);
            e.initCause(t);
            throw e;
          }
        }
      }
      if (mem.hasCrashed()) {
        stats.memoryFired++;
      }
      if (store.hasCrashed()) {
        stats.backingFired++;
      }
      if (!crashed()) {
        how = "between operations (armed crash did not fire)";
      }
      daemonArmed = false;
      mem.crashAfter(-1);
      store.crashAfter(-1);
      note("CRASH " + how + (daemonOnly ? ", daemon only" : ", power loss of both media"));
      countJournal();
      CrashingMemory next;
      if (daemonOnly) {
        stats.daemonCrashes++;
        next = mem.processCrash();
        cache.abandon();
        store.processCrash();
      } else {
        next = mem.crash(rnd);
        cache.abandon();
        powerLossBacking();
      }
      mem = next;
      boolean powerLost = reopen(!daemonOnly);
      checkRecovered(powerLost, daemonOnly);
      if (rnd.nextBoolean()) {
        probePastEof();
      }
      int after = rnd.nextInt(6);
      if (after < 2) {
        flushAndCheckBacking(after == 0);
      }
    }

    /**
     * After recovery a file extended by ftruncate reads zeros past its old end, whatever the
     * backing file or the cache still holds there (a cut truncate, an interrupted write); then
     * it is cut back.
     */
    private void probePastEof() throws IOException {
      for (Map.Entry<String, MFile> e : ns.entrySet()) {
        MFile f = e.getValue();
        int size = f.last().length;
        int grown = size + 1 + rnd.nextInt(3 * BS);
        note("probe " + e.getKey() + " " + size + "->" + grown);
        cache.truncate(e.getKey(), grown);
        byte[] got = CacheFixture.read(cache, e.getKey());
        for (int i = size; i < grown; i++) {
          if (got[i] != 0) {
            throw failure("after recovery, " + e.getKey() + " (" + f + ") extended by ftruncate"
                + " from " + size + " to " + grown + " bytes shows " + describe(got, size, grown)
                + "where it must read zeros: stale or invented data past its end");
          }
        }
        cache.truncate(e.getKey(), size);
      }
    }

    private void powerLossBacking() {
      if (rnd.nextInt(4) == 0) {
        store.powerLoss(); // exactly what is durable
      } else {
        store.powerLoss(rnd);
      }
      boot = CacheFixture.nextBoot();
    }

    /** Recovery, sometimes crashing in it (then both media lose power); true if power was lost. */
    private boolean reopen(boolean powerLost) {
      for (int attempt = 0; ; attempt++) {
        try {
          if (options.tolerates(KnownBug.RECORD_FREES_TORN_BY_POWER_LOSS)) {
            stats.finishedFrees += finishTornRecordFrees(mem);
          }
          if (options.tolerates(KnownBug.RENAME_REAPPLIED_OPENS_GONE_SOURCE)) {
            stats.undoneRenames += undoAppliedRenames(mem, store, boot);
          }
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
        if (new java.util.HashSet<>(store.files().values()).size() < store.files().size()) {
          stats.bothNames++;
        }
        if (attempt == 0 && rnd.nextInt(8) == 0) {
          if (rnd.nextBoolean()) {
            mem.crashAfter(rnd.nextInt(60));
          } else {
            store.crashAfter(rnd.nextInt(6));
          }
        }
        try {
          cache = WriteCache.openManual(mem, store, cfg, boot);
          if (!crashed()) {
            mem.crashAfter(-1);
            store.crashAfter(-1);
            return powerLost;
          }
          cache.abandon();
        } catch (Throwable t) {
          if (!crashed()) {
            AssertionError e = failure("recovery failed: " + t);
            e.initCause(t);
            throw e;
          }
        }
        stats.recoveryCrashes++;
        note("CRASH during recovery, power loss of both media");
        mem.crashAfter(-1);
        store.crashAfter(-1);
        CrashingMemory next = mem.crash(rnd);
        powerLossBacking();
        mem = next;
        powerLost = true;
      }
    }

    // ---- the workload ---------------------------------------------------------------------

    private void step() throws IOException {
      List<String> existing = new ArrayList<>(ns.keySet());
      List<String> free = new ArrayList<>();
      for (String n : NAMES) {
        if (!ns.containsKey(n)) {
          free.add(n);
        }
      }
      int op = rnd.nextInt(100);
      if (existing.isEmpty() || (op < 10 && !free.isEmpty())) {
        create(free.get(rnd.nextInt(free.size())));
        return;
      }
      String name = existing.get(rnd.nextInt(existing.size()));
      MFile f = ns.get(name);
      if (op < 45) {
        f.inFlightFrom = f.states.size();
        write(name, f);
        f.inFlightFrom = -1;
      } else if (op < 57) {
        note("commit");
        cache.commit();
        acknowledge();
      } else if (op < 63) {
        int size = rnd.nextInt(f.last().length + 3 * BS); // down, or up by up to 3 blocks
        note("truncate " + name + " " + size);
        f.inFlightFrom = f.states.size();
        f.states.add(Arrays.copyOf(f.last(), size));
        cache.truncate(name, size);
        f.inFlightFrom = -1;
      } else if (op < 67) {
        f.inFlightFrom = f.states.size();
        zero(name, f);
        f.inFlightFrom = -1;
      } else if (op < 73) {
        unlink(name);
      } else if (op < 83) {
        rename(name, NAMES[rnd.nextInt(NAMES.length)]);
      } else if (op < 89) {
        note("writeback step");
        cache.writebackStep();
      } else if (op < 95) {
        note("journal step");
        if (options.tolerates(KnownBug.RECORD_APPLIED_TO_DEAD_FILE_NOT_PLACED)
            || options.tolerates(KnownBug.OPEN_EPOCH_VERSION_TORN_BY_REWRITE)) {
          cache.commit(); // nothing uncommitted while records are applied
          acknowledge();
        }
        cache.journalStep();
      } else {
        note("flush");
        cache.flush(60_000);
        acknowledge();
      }
    }

    /** The namespace the operation about to be called makes: a crash may keep it or not. */
    private void namespaceOp(String what) {
      note(what);
      namespaces.add(new TreeMap<>(ns));
      namespaceOpInFlight = true;
    }

    private void create(String path) throws IOException {
      MFile f = new MFile(++nextId);
      ns.put(path, f);
      namespaceOp("create " + path + " " + f);
      BothMediaCrashTest.create(cache, path);
      namespaceOpInFlight = false;
    }

    private void write(String name, MFile f) throws IOException {
      int size = f.last().length;
      int where = rnd.nextInt(10);
      long off = where < 2 ? size // append
          : where < 3 ? size + 1 + rnd.nextInt(4 * BS) // past the end: a hole of up to 4 blocks
          : rnd.nextInt(Math.min(size + BS, 12 * BS));
      byte[] data = new byte[1 + rnd.nextInt(3 * BS)];
      rnd.nextBytes(data);
      note("write " + name + " " + off + "+" + data.length);
      f.states.add(CacheFixture.apply(f.last(), off, data));
      CacheFixture.write(cache, name, off, data);
    }

    /** Punch hole or zero range (keeping the size, or not), as WriteCacheCrashTest does. */
    private void zero(String name, MFile f) throws IOException {
      int size = f.last().length;
      long off = rnd.nextInt(Math.max(1, Math.min(size + BS, 20 * BS)));
      int len = 1 + rnd.nextInt(16 * BS);
      int kind = rnd.nextInt(3);
      note((kind == 0 ? "punch " : kind == 1 ? "zero keep-size " : "zero ") + name + " " + off
          + "+" + len);
      byte[] before = f.last();
      if (kind == 2 && off + len > size) {
        f.states.add(Arrays.copyOf(before, (int) off + len)); // extended, not yet zeroed
      }
      byte[] after = Arrays.copyOf(before, kind == 2 ? Math.max(size, (int) off + len) : size);
      Arrays.fill(after, (int) Math.min(off, after.length), (int) Math.min(off + len,
          after.length), (byte) 0);
      f.states.add(after);
      WriteCache.OpenFile h = cache.open(name);
      try {
        if (kind == 0) {
          cache.punchHole(h, off, len);
        } else {
          cache.zeroRange(h, off, len, kind == 1);
        }
      } finally {
        cache.close(h);
      }
    }

    private void unlink(String name) throws IOException {
      MFile f = ns.remove(name);
      namespaceOp("unlink " + name + " " + f);
      spareDaemonCrash(() -> cache.unlink(name));
      namespaceOpInFlight = false;
    }

    /**
     * Runs an unlink or a rename over a file; tolerating {@link
     * KnownBug#DAEMON_CRASH_BETWEEN_RECORD_AND_DEAD_MARK}, an armed daemon crash waits until it
     * returned.
     */
    private void spareDaemonCrash(IoAction op) throws IOException {
      long left = mem.countdown();
      if (!daemonArmed || left < 0
          || !options.tolerates(KnownBug.DAEMON_CRASH_BETWEEN_RECORD_AND_DEAD_MARK)) {
        op.run();
        return;
      }
      stats.sparedNamespaceOps++;
      mem.crashAfter(-1);
      try {
        op.run();
      } finally {
        mem.crashAfter(left);
      }
    }

    private void rename(String from, String to) throws IOException {
      if (to.equals(from)) {
        return;
      }
      MFile f = ns.remove(from);
      MFile victim = ns.put(to, f);
      namespaceOp("rename " + from + " " + to + " " + f + (victim == null ? ""
          : " (over " + victim + ")"));
      if (victim != null) {
        spareDaemonCrash(() -> cache.rename(from, to));
      } else {
        cache.rename(from, to);
      }
      namespaceOpInFlight = false;
    }

    /** A commit returned: the model's present is durable. */
    private void acknowledge() {
      for (MFile f : ns.values()) {
        f.states = new ArrayList<>(List.of(f.last()));
        f.inFlightFrom = -1;
      }
      namespaces = new ArrayList<>(List.of(new TreeMap<>(ns)));
      namespaceOpInFlight = false;
    }

    // ---- checks ---------------------------------------------------------------------------

    /**
     * After recovery, through the cache: the journal is empty (every committed record applied
     * before the mount starts), the names are one of the namespaces the crash may leave, in the
     * cache as in the backing directory, none in lost+found; each file keeps the backing inode
     * it was known by, and its content is one the crash may leave. What was recovered is the
     * new truth, committed: a later power loss must keep it.
     */
    private void checkRecovered(boolean powerLost, boolean daemonFirst) throws IOException {
      SortedMap<String, Long> onDisk = store.files();
      for (String p : onDisk.keySet()) {
        if (p.startsWith(WriteCache.LOST_AND_FOUND + "/")) {
          throw failure("recovery put data in lost+found: " + p);
        }
      }
      for (String dir : List.of("", "d", "e")) {
        Map<String, WriteCache.Shown> pending = cache.overlayChildren(dir);
        if (!pending.isEmpty()) {
          throw failure("after recovery the overlay still decides names in '" + dir + "': "
              + pending.keySet() + " (records recovery did not apply)");
        }
      }
      TreeMap<String, byte[]> seen = new TreeMap<>();
      for (String n : NAMES) {
        if (cache.shown(n) != null) {
          throw failure("after recovery the overlay still shows " + n);
        }
        try {
          seen.put(n, CacheFixture.read(cache, n));
        } catch (java.nio.file.NoSuchFileException e) {
          // not there
        }
      }
      if (!seen.keySet().equals(onDisk.keySet())) {
        throw failure("after recovery the cache shows " + seen.keySet() + " but the backing"
            + " directory holds " + onDisk.keySet());
      }
      List<TreeMap<String, MFile>> candidates = namespaces;
      if (!powerLost) {
        // A daemon crash keeps every record whose stores completed: every namespace operation
        // that returned; the one in flight landed or not.
        int from = namespaces.size() - (namespaceOpInFlight ? 2 : 1);
        candidates = namespaces.subList(Math.max(0, from), namespaces.size());
      }
      StringBuilder why = new StringBuilder();
      TreeMap<String, MFile> found = null;
      int index = -1;
      for (int i = candidates.size() - 1; i >= 0 && found == null; i--) {
        String mismatch = matches(candidates.get(i), seen, onDisk, powerLost, daemonFirst);
        if (mismatch == null) {
          found = candidates.get(i);
          index = i;
        } else {
          why.append("\n    namespace ").append(namespaces.indexOf(candidates.get(i)))
              .append(": ").append(mismatch);
        }
      }
      if (found == null) {
        throw failure("the recovered names and contents " + describe(seen) + " match none of"
            + " the " + candidates.size() + " namespaces a " + (powerLost ? "power loss"
            : "daemon crash") + " may leave:" + why);
      }
      if (index == 0) {
        stats.ackedNamespaces++;
      }
      if (index < candidates.size() - 1) {
        stats.olderNamespaces++;
      }
      // The recovered state is the new truth, and it is committed (in the cache, or durable in
      // the backing directory: recovery applied every record, fsyncing what they touched).
      ns = new TreeMap<>(found);
      for (Map.Entry<String, MFile> e : ns.entrySet()) {
        MFile f = e.getValue();
        f.states = new ArrayList<>(List.of(seen.get(e.getKey())));
        f.inFlightFrom = -1;
        f.ino = onDisk.get(e.getKey());
      }
      namespaces = new ArrayList<>(List.of(new TreeMap<>(ns)));
      namespaceOpInFlight = false;
    }

    /** Why the recovered state is not {@code candidate}'s, or null if it is. */
    private String matches(Map<String, MFile> candidate, Map<String, byte[]> seen,
        Map<String, Long> onDisk, boolean powerLost, boolean daemonFirst) {
      if (!candidate.keySet().equals(seen.keySet())) {
        return "names " + candidate.keySet();
      }
      for (Map.Entry<String, MFile> e : candidate.entrySet()) {
        MFile f = e.getValue();
        if (f.ino != 0 && onDisk.get(e.getKey()) != f.ino) {
          return e.getKey() + " should be " + f + " but is backing inode "
              + onDisk.get(e.getKey());
        }
        String bad = powerLost ? checkContent(f, seen.get(e.getKey()), daemonFirst)
            : checkContentSameBoot(f, seen.get(e.getKey()));
        if (bad != null) {
          return e.getKey() + " should be " + f + ": " + bad;
        }
      }
      for (Map.Entry<String, MFile> e : candidate.entrySet()) {
        if (e.getValue().ino != 0) {
          stats.identityChecks++;
        }
      }
      return null;
    }

    private static String describe(Map<String, byte[]> seen) {
      StringBuilder out = new StringBuilder("{");
      for (Map.Entry<String, byte[]> e : seen.entrySet()) {
        out.append(out.length() == 1 ? "" : ", ").append(e.getKey()).append(": ")
            .append(e.getValue().length).append(" bytes");
      }
      return out.append("}").toString();
    }

    /**
     * After a power loss: the size is one of its states' since the last acknowledged commit,
     * and every block equals that block in one of them (nothing torn, lost or invented). With
     * {@code daemonFirst} (a daemon crash, then a power loss during the recovery that followed,
     * which may have committed what the operation in flight had stored), a block may also mix,
     * byte by byte, the states before and after that operation.
     */
    private static String checkContent(MFile f, byte[] got, boolean daemonFirst) {
      int min = Integer.MAX_VALUE;
      int max = 0;
      for (byte[] s : f.states) {
        min = Math.min(min, s.length);
        max = Math.max(max, s.length);
      }
      if (got.length < min || got.length > max) {
        return "size " + got.length + ", outside the sizes of its states since the last"
            + " acknowledged commit [" + min + ", " + max + "]";
      }
      for (int b = 0; b * BS < got.length; b++) {
        int from = b * BS;
        int to = Math.min(got.length, from + BS);
        boolean ok = false;
        for (byte[] s : f.states) {
          if (blockMatches(got, s, from, to)) {
            ok = true;
            break;
          }
        }
        if (!ok && daemonFirst && f.inFlightFrom > 0) {
          List<byte[]> inFlight = f.states.subList(f.inFlightFrom - 1, f.states.size());
          ok = true;
          for (int i = from; i < to && ok; i++) {
            boolean byteOk = false;
            for (byte[] s : inFlight) {
              byteOk |= got[i] == (i < s.length ? s[i] : 0);
            }
            ok = byteOk;
          }
        }
        if (!ok) {
          StringBuilder detail = new StringBuilder("block " + b + " holds "
              + describe(got, from, to) + "and matches none of its states since the last"
              + " acknowledged commit (torn, lost or invented data):");
          for (byte[] st : f.states) {
            detail.append(" a state of " + st.length + " bytes holds " + describe(st, from, to)
                + ";");
          }
          return detail.toString();
        }
      }
      return null;
    }

    /**
     * After a daemon crash (SameBootRecoveryTest's contract): every operation that returned is
     * there, committed or not; the one in flight may have landed in part, each byte as before
     * it or as it left it.
     */
    private static String checkContentSameBoot(MFile f, byte[] got) {
      int first = f.inFlightFrom >= 0 ? f.inFlightFrom - 1 : f.states.size() - 1;
      List<byte[]> allowed = f.states.subList(first, f.states.size());
      boolean sizeOk = false;
      for (byte[] s : allowed) {
        sizeOk |= s.length == got.length;
      }
      if (!sizeOk) {
        return "size " + got.length + " after a daemon crash, none of the sizes before and"
            + " after the operation in flight";
      }
      for (int i = 0; i < got.length; i++) {
        boolean ok = false;
        for (byte[] s : allowed) {
          ok |= got[i] == (i < s.length ? s[i] : 0);
        }
        if (!ok) {
          return "byte " + i + " after a daemon crash is neither as the last operation that"
              + " returned left it nor as the one in flight wrote it";
        }
      }
      return null;
    }

    /** For messages: which runs of a block are zeros, and a digest of the rest. */
    private static String describe(byte[] b, int from, int to) {
      StringBuilder out = new StringBuilder();
      int i = from;
      while (i < to) {
        int j = i;
        boolean zero = i >= b.length || b[i] == 0;
        while (j < to && (j >= b.length || b[j] == 0) == zero) {
          j++;
        }
        int h = 0;
        for (int k = i; k < j && k < b.length; k++) {
          h = h * 31 + b[k];
        }
        out.append("[").append(i).append(",").append(j).append(zero ? ") zeros "
            : ") data#" + Integer.toHexString(h) + " ");
        i = j;
      }
      return out.toString();
    }

    private static boolean blockMatches(byte[] got, byte[] state, int from, int to) {
      for (int i = from; i < to; i++) {
        byte expected = i < state.length ? state[i] : 0;
        if (got[i] != expected) {
          return false;
        }
      }
      return true;
    }

    /**
     * A full writeback, then the backing directory must hold exactly the model's names, files
     * and bytes; with {@code thenPowerLoss}, still after a power loss of the backing directory
     * alone.
     */
    private void flushAndCheckBacking(boolean thenPowerLoss) throws IOException {
      stats.flushChecks++;
      note("flush (check)");
      cache.flush(60_000);
      acknowledge();
      checkBackingEqualsModel("after a full writeback");
      if (thenPowerLoss) {
        stats.flushPowerLossChecks++;
        countJournal();
        cache.abandon();
        store.powerLoss(rnd);
        boot = CacheFixture.nextBoot();
        checkBackingEqualsModel("after a full writeback and a power loss of the backing");
        cache = WriteCache.openManual(mem, store, cfg, boot);
      }
    }

    private void checkBackingEqualsModel(String when) throws IOException {
      SortedMap<String, Long> got = store.files();
      if (!got.keySet().equals(ns.keySet())) {
        throw failure(when + ": backing files " + got + ", expected " + ns);
      }
      for (Map.Entry<String, MFile> e : ns.entrySet()) {
        MFile f = e.getValue();
        long ino = got.get(e.getKey());
        if (f.ino != 0 && f.ino != ino) {
          throw failure(when + ": backing file " + e.getKey() + " is inode " + ino + ", not "
              + f + "'s");
        }
        f.ino = ino; // its CREATE applied and durable: its inode from now on
        byte[] want = f.last();
        byte[] have = store.content(e.getKey());
        if (!Arrays.equals(want, have)) {
          throw failure(when + ": backing file " + e.getKey() + " (" + have.length
              + " bytes) differs from the model " + f + " (" + want.length + " bytes)");
        }
      }
    }
  }
}
