package io.wcfs.core;

import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Recovery at mount: rebuilds the engine's memory from what {@link CacheScan} read, matches
 * every recorded file to the backing directory by its path (the truth; inode numbers are
 * hints), frees what never committed, finishes interrupted truncates and unlinks, zeros what a
 * file's last cached block holds past its end, and applies recorded sizes of files with no
 * blocks left. Nothing is written before everything was read
 * and checked, so a cache refused as corrupt is left exactly as it was.
 */
final class Recovery {
  private static final Logger LOG = LoggerFactory.getLogger(Recovery.class);

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final SlotTable table;
  private final FileRegistry files;
  private final Epochs epochs;
  private final Writeback writeback;
  private final Journal journal;
  private final Counters.Recovery counters;
  /** File slots named by committed journal records (see {@link #recoverFile}). */
  private java.util.Set<Integer> slotsInRecords = java.util.Set.of();
  /** File slots whose file a committed record killed (unlinked, or renamed over). */
  private final java.util.Set<Integer> killedSlots = new java.util.HashSet<>();

  Recovery(CacheMemory mem, CacheLayout layout, BackingStore backing, SlotTable table,
      FileRegistry files, Epochs epochs, Writeback writeback, Journal journal,
      Counters.Recovery counters) {
    this.mem = mem;
    this.layout = layout;
    this.backing = backing;
    this.table = table;
    this.files = files;
    this.epochs = epochs;
    this.writeback = writeback;
    this.journal = journal;
    this.counters = counters;
  }

  /**
   * Rebuilds the index from the device: uncommitted records and stale versions are freed;
   * each file goes to its recorded path (see {@link #recoverFile}); a file whose unlink was
   * interrupted after the name was gone is dropped; a backing file longer than its recorded
   * size (a cut truncate) is cut to that size.
   */
  void run(long bootId) throws IOException {
    // Same boot: only the daemon died (kill -9, OOM, a bug); the machine kept every store it
    // made into the mapping, flushed or not. After a reboot only what was committed counts.
    boolean sameBoot = bootId != 0 && layout.boot() == bootId;
    if (sameBoot) {
      // What the dead daemon stored is in the page cache (or the CPU's caches), not
      // necessarily durable: make all of it durable before deciding anything from it. Else a
      // power cut during or after this recovery could keep what it writes (a cleared commit
      // record, a new SeqCount) without what that relied on (the superblock's SeqCount or an
      // epoch's blocks still in the page cache).
      mem.flush(0, mem.size());
      mem.commit();
    }
    // A daemon killed before us may have left backing changes that only its next commit was
    // to make durable (a directory made outside the journal, a size-only truncate): nothing
    // here knows them, so the whole backing filesystem is made durable before recovery and
    // the commits after it rely on what the backing directory shows.
    backing.syncAll();
    CacheScan scan = CacheScan.of(layout, sameBoot);
    if (!scan.problems.isEmpty()) {
      throw new CacheFormatException("cache corruption: " + scan.problems.get(0)
          + "; `wcfs check` lists the cache contents");
    }
    long seqCount = scan.seqCount;
    if (layout.commitRecords() != null) {
      // What the commit records proved goes into SeqCount, durably, and only then are they
      // forgotten (in one commit a crash could keep the forgetting without the SeqCount), all
      // before anything is freed: a record of an epoch that did not land could otherwise
      // come to look whole again once new writes refill the same slots.
      if (seqCount != layout.seqCount()) {
        layout.storeSeqCount(seqCount);
        mem.commit();
      }
      layout.commitRecords().clear();
      mem.commit();
    }
    int dropped0 = 0;
    for (int i = 0; i < scan.stale.size(); i++) {
      if (layout.entrySeq(scan.stale.get(i)) >= seqCount) {
        dropped0++;
      }
    }
    if (sameBoot) {
      seqCount = commitOpenEpoch(scan);
      counters.recovered("same boot (only the daemon stopped): kept "
          + scan.openEpochEntries.size() + " uncommitted blocks and "
          + scan.openEpochVersions.size() + " file versions whose writes had completed");
    } else {
      counters.recovered((layout.boot() == 0 ? "first mount" : "after a reboot")
          + ": kept committed data only; " + dropped0 + " uncommitted blocks dropped");
    }
    epochs.recovered(seqCount);
    slotsInRecords = scan.slotsInRecords;
    // A committed (or, same boot, complete) record that removed a file's last name is the
    // word on its death: the DEAD mark is stored only when the record is applied.
    for (CacheLayout.Record r : scan.records) {
      if (r.victimSlot() >= 0) {
        killedSlots.add(r.victimSlot());
      }
    }
    IntList freedFileSlots = new IntList();
    for (int fs = scan.files.length - 1; fs >= 0; fs--) { // the free stack hands out 0 first
      CacheScan.FileRecord r = scan.files[fs];
      CachedFile f = r == null ? null : recoverFile(fs, r.v(), r.version());
      if (f == null && r != null) {
        freedFileSlots.add(fs);
      }
      files.recovered(fs, f);
    }
    IntList uncommittedVersions = scan.uncommittedVersions;
    IntList dropped = scan.stale;
    int liveCount = 0;
    for (int s : scan.live) { // oldest first: the order writeback follows
      long loc = layout.entryLocation(s);
      CachedFile f = files.bySlot(CacheLayout.locationFileSlot(loc));
      if (f == null || f.dead) {
        dropped.add(s); // its file's unlink was finished above, or journaled
        continue;
      }
      f.blocks.put(CacheLayout.locationBlock(loc), s);
      table.recovered(s);
      liveCount++;
    }
    for (CachedFile f : files.all()) {
      if (!f.dead) {
        zeroPastEnd(f); // durable with the memory commit below
      }
      if (f.backingLonger && !slotsInRecords.contains(f.fileSlot)) {
        finishTruncate(f);
      }
    }
    for (int i = 0; i < uncommittedVersions.size(); i++) {
      int fv = uncommittedVersions.get(i);
      layout.storeFileVersionFree(fv / 2, fv % 2);
      layout.flushFileVersion(fv / 2, fv % 2);
    }
    for (int i = 0; i < dropped.size(); i++) {
      layout.storeEntryFree(dropped.get(i));
      layout.flushEntry(dropped.get(i));
    }
    mem.commit();
    for (int i = 0; i < freedFileSlots.size(); i++) {
      epochs.storeFileSlotFree(freedFileSlots.get(i));
    }
    mem.commit();
    table.recoveredFreeList();
    // The namespace journal: committed records are applied now, in order, idempotently (a
    // record may or may not have reached the backing directory before the crash).
    journal.recovered(scan.records, scan.uncommittedRecords);
    journal.applyRecovered();
    for (CachedFile f : files.all()) {
      if (f.absent && f.pendingRecords == 0 && !f.dead) {
        // Its CREATE never committed (same boot, the create had not returned): nothing to keep.
        f.dead = true;
        f.deathEpoch = 0;
      }
      if (f.dead && f.pendingRecords == 0) {
        writeback.releaseIfDone(f);
      }
    }
    // Files with a recorded size but no blocks left: apply the size, release the slot.
    for (CachedFile f : files.all()) {
      if (f.blocks.size() == 0 && !f.dead && !f.absent && f.fileSlot >= 0) {
        f.lock.writeLock().lock();
        try {
          writeback.copyToBacking(f, new long[0], new int[0], f.size, f.mtimeNanos);
          writeback.freeWrittenBack(f, new long[0], new int[0]);
        } catch (IOException e) {
          LOG.warn("{}: could not apply the recorded size {} yet ({}); kept in the cache", f.path,
              f.size, e.toString());
        } finally {
          f.lock.writeLock().unlock();
        }
      }
    }
    if (liveCount > 0 || dropped.size() > 0) {
      LOG.info("recovered {} committed blocks in {} files; dropped {} uncommitted or stale",
          liveCount, files.size(), dropped.size());
    }
  }

  /**
   * Commits the open epoch's complete records, as the commit the daemon did not get to would
   * have: first the open epoch's records that were not taken (a write in flight) are freed, so
   * the new seq_count cannot make them count; then the taken ones are flushed; then seq_count.
   * Returns the new seq_count.
   */
  private long commitOpenEpoch(CacheScan scan) throws IOException {
    long seqCount = scan.seqCount;
    if (scan.openEpochEntries.isEmpty() && scan.openEpochVersions.isEmpty()
        && scan.openEpochRecords.isEmpty()) {
      return seqCount;
    }
    for (int i = 0; i < scan.uncommittedRecords.size(); i++) {
      layout.storeRecordFree(scan.uncommittedRecords.get(i));
      layout.flushRecord(scan.uncommittedRecords.get(i));
    }
    for (int i = 0; i < scan.openEpochRecords.size(); i++) {
      layout.flushRecord(scan.openEpochRecords.get(i));
    }
    for (int i = 0; i < scan.stale.size(); i++) {
      int s = scan.stale.get(i);
      if (layout.entrySeq(s) >= seqCount) {
        layout.storeEntryFree(s);
        layout.flushEntry(s);
      }
    }
    for (int i = 0; i < scan.uncommittedVersions.size(); i++) {
      int fv = scan.uncommittedVersions.get(i);
      layout.storeFileVersionFree(fv / 2, fv % 2);
      layout.flushFileVersion(fv / 2, fv % 2);
    }
    for (int i = 0; i < scan.openEpochEntries.size(); i++) {
      layout.flushBlock(scan.openEpochEntries.get(i));
      layout.flushEntry(scan.openEpochEntries.get(i));
    }
    for (int i = 0; i < scan.openEpochVersions.size(); i++) {
      int fv = scan.openEpochVersions.get(i);
      layout.flushFileVersion(fv / 2, fv % 2);
    }
    mem.commit();
    layout.storeSeqCount(scan.acceptBelow);
    mem.commit();
    LOG.info("same-boot recovery: committed {} blocks and {} file versions that the daemon had"
        + " stored but not committed when it stopped", scan.openEpochEntries.size(),
        scan.openEpochVersions.size());
    return scan.acceptBelow;
  }

  /**
   * A committed file slot: the path it records is the truth (DESIGN.md, "Identity"). A
   * different inode number at that path (network filesystems renumber inodes when remounted;
   * a file replaced behind wcfs's back) is logged and counted, and the blocks go to the path as
   * a block cache's go to its origin. A path that no longer holds a regular file gives the
   * blocks nowhere to go: they go to lost+found. Nothing committed is dropped here.
   */
  private CachedFile recoverFile(int fs, CacheLayout.FileVersion v, int version)
      throws IOException {
    LOG.debug("slot {}: {}", fs, v);
    boolean dead = v.dead() || killedSlots.contains(fs);
    if (dead || v.absent() || (slotsInRecords.contains(fs) && backing.stat(v.path()) == null)) {
      // Not (or not yet) at its recorded path: dead (its blocks go, its slot after its
      // records), created in the cache (its CREATE is pending), or renamed by a record that
      // reached the backing directory before the crash. The journal's records say where it
      // is; nothing here looks it up by path.
      CachedFile f = new CachedFile(0, 0, v.absent() || dead ? null : v.path(), v.size(),
          v.mtimeNanos());
      f.absent = v.absent();
      f.dead = dead;
      f.deathEpoch = dead ? 0 : Long.MAX_VALUE;
      f.mode = v.mode();
      f.uid = v.uid();
      f.gid = v.gid();
      f.atimeNanos = v.mtimeNanos();
      f.ctimeNanos = v.mtimeNanos();
      synchronized (table) {
        files.registerAbsent(f);
      }
      if (!f.absent) {
        f.shownIno = 0;
      }
      f.fileSlot = fs;
      f.version = version;
      f.versionSeq = v.seq();
      return f;
    }
    String path = v.path();
    BackingStore.Stat st = backing.stat(path);
    String lost = null;
    boolean sameDevice = st != null && (v.dev() == 0 || CacheLayout.devHint(st.dev()) == v.dev());
    boolean sameInode = sameDevice && st.ino() == v.ino();
    if (v.unlinking() && (st == null || (sameDevice && !sameInode))) {
      // The name is gone, or (same filesystem, no remount in between) holds the file renamed
      // over it: the unlink or rename happened; finish it.
      LOG.info("cache slot {}: the unlink of {} (or rename over it) was interrupted after the"
          + " backing directory changed; finishing it", fs, path);
      return null;
    }
    if (v.unlinking() && !sameInode) {
      // Another filesystem instance (remounted, so inode numbers say nothing): whether the
      // name still holds this file cannot be told, so its data is kept apart.
      lost = "was being unlinked or renamed over when wcfs stopped, and its backing"
          + " filesystem was remounted since";
    } else if (st == null || !st.regularFile()) {
      lost = st == null ? "no longer exists in the backing directory"
          : "is no longer a regular file in the backing directory";
    } else if (files.taken(st)) {
      lost = "now names the same file as another path the cache holds data for";
    }
    if (lost != null) {
      String to = Writeback.lostAndFoundPath(path, fs, v.seq());
      LOG.error("cache slot {}: {} {}; its committed data (size {}) goes to {} instead",
          fs, path, lost, v.size(), to);
      backing.createFile(to);
      counters.lostAndFound.increment();
      path = to;
      st = backing.stat(path);
      if (st == null) {
        throw new IOException("could not create " + to + " in the backing directory");
      }
    } else if (!sameInode) {
      counters.inodeHintMismatches.increment();
      LOG.warn("cache slot {}: {} was inode {} when cached and is inode {} now (a network"
          + " filesystem remounted, or the file replaced behind wcfs's back); the cache's"
          + " record of the path wins: its committed data goes to {}", fs, path, v.ino(),
          st.ino(), path);
    }
    CachedFile f = new CachedFile(st.dev(), st.ino(), path, v.size(), v.mtimeNanos());
    f.fileSlot = fs;
    f.version = version;
    f.versionSeq = v.seq();
    f.backingLonger = st.size() > v.size();
    return f;
  }

  /**
   * The bytes past a file's size in the cached block holding its end must read as zeros: the
   * write path copies that block whole when the file grows again. A daemon killed in a write
   * that extends the file may leave the write's bytes there and the size from before it
   * (same-boot recovery takes the complete blocks; the new size was never stored). They are
   * zeroed here, in place: no reader sees them, so a torn store is harmless; flushed here and
   * committed by recovery's memory commit.
   */
  private void zeroPastEnd(CachedFile f) throws IOException {
    int blockSize = layout.geometry().blockSize();
    int tail = (int) (f.size % blockSize);
    int slot = tail == 0 ? -1 : f.blocks.get(f.size / blockSize);
    if (slot < 0) {
      return;
    }
    int len = blockSize - tail;
    long at = layout.dataOffset(slot) + tail;
    try (io.wcfs.nativ.NativeBuffer buf = new io.wcfs.nativ.NativeBuffer(len)) {
      mem.copyOut(at, buf.address(), len);
      byte[] bytes = new byte[len];
      buf.get(0, bytes, 0, len);
      boolean zero = true;
      for (byte b : bytes) {
        zero &= b == 0;
      }
      if (zero) {
        return;
      }
      io.wcfs.nativ.NativeBuffer.zero(buf.address(), len);
      mem.copyIn(at, buf.address(), len);
      mem.flush(at, len);
    }
    LOG.info("{}: zeroed {} bytes past its end of file ({}) in its last cached block", f.path,
        len, f.size);
  }

  /** A truncate committed before the crash: finish it before anyone reads the old tail. */
  private void finishTruncate(CachedFile f) throws IOException {
    try (BackingStore.BackingFile file = backing.open(f.path)) {
      file.truncate(f.size);
      file.sync();
    }
  }
}
