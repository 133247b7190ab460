package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One read-only pass over the file table and the entries, by the rules that decide what a
 * cache holds: a record is committed iff {@link CacheLayout#isCommitted}; of a file slot's two
 * versions the newest committed one counts; of several committed entries for one block the
 * highest seq wins; a committed entry past its file's recorded size, or naming a file slot
 * that holds no file, or two entries of one block with one seq, are findings. Recovery and
 * {@code wcfs check} both read the cache through this class, so they cannot disagree. It
 * writes nothing: a cache refused as corrupt is left exactly as it was.
 */
final class CacheScan {
  /** The newest committed version of a file slot, and which of its two versions it is. */
  record FileRecord(int slot, int version, CacheLayout.FileVersion v) {}

  /** Seq and slot packed in one long, to sort entries by seq. */
  private static final int SLOT_BITS = 31;

  final long seqCount;
  /**
   * Records below this epoch count as committed: seqCount, or in the boot the cache was
   * mounted in (only the daemon died, every complete store survived) the two open epochs past
   * it as well, the one being committed and the one after it.
   */
  final long acceptBelow;
  /** Accepted records of the open epoch: entries, and file versions (fileSlot * 2 + v). */
  final IntList openEpochEntries = new IntList();
  final IntList openEpochVersions = new IntList();
  /** By file slot; null where the slot holds no committed file. */
  final FileRecord[] files;
  /** Versions written in an epoch that never committed (fileSlot * 2 + version). */
  final IntList uncommittedVersions = new IntList();
  /** Committed entries holding the newest version of their block, oldest (lowest seq) first. */
  int[] live;
  /** Entries to free: uncommitted, an older version of a block, or past the file's size. */
  final IntList stale = new IntList();
  /** Committed journal records, in order (oldest first). */
  final List<CacheLayout.Record> records = new ArrayList<>();
  /** Journal records of an epoch that never committed: to free. */
  final IntList uncommittedRecords = new IntList();
  /** Accepted journal records of the open epoch (same boot). */
  final IntList openEpochRecords = new IntList();
  /** File slots named by committed records: their path may already be the record's target. */
  final java.util.Set<Integer> slotsInRecords = new java.util.HashSet<>();
  /** Inconsistencies a mount refuses, each one sentence. */
  final List<String> problems = new ArrayList<>();

  private CacheScan(long seqCount, long acceptBelow, int fileSlots) {
    this.seqCount = seqCount;
    this.acceptBelow = acceptBelow;
    this.files = new FileRecord[fileSlots];
  }

  static CacheScan of(CacheLayout layout) throws IOException {
    return of(layout, false);
  }

  /**
   * {@code acceptOpenEpoch}: also take the open epoch's complete records (an entry or version
   * whose seq word is stored is complete: it is stored last). An entry of the open epoch whose
   * file version never got stored, or past its size, belonged to a write that had not
   * returned; it is dropped, not a finding.
   */
  static CacheScan of(CacheLayout layout, boolean acceptOpenEpoch) throws IOException {
    long seqCount = layout.committedSeqCount();
    // Same boot: the epoch whose commit was running (sealed) and the open one after it.
    long acceptBelow = acceptOpenEpoch ? seqCount + 2 : seqCount;
    CacheLayout.Geometry g = layout.geometry();
    int fileSlots = g.fileSlots();
    long[] order = new long[(int) g.nBlocks()];
    CacheScan scan = new CacheScan(seqCount, acceptBelow, fileSlots);
    for (int fs = 0; fs < fileSlots; fs++) {
      CacheLayout.FileVersion best = null;
      int bestV = -1;
      for (int v = 0; v < 2; v++) {
        CacheLayout.FileVersion fv = layout.readFileVersion(fs, v);
        if (fv.seq() == CacheLayout.FREE) {
          continue;
        }
        if (!CacheLayout.isCommitted(fv.seq(), acceptBelow)) {
          scan.uncommittedVersions.add(fs * 2 + v);
        } else if (best == null || fv.seq() > best.seq()) {
          best = fv;
          bestV = v;
        }
      }
      if (best != null && best.path() == null) {
        scan.problems.add("file slot " + fs + " holds a committed version with an invalid path"
            + " length");
      }
      if (best != null) {
        scan.files[fs] = new FileRecord(fs, bestV, best);
        if (best.seq() >= seqCount) {
          scan.openEpochVersions.add(fs * 2 + bestV);
        }
      }
    }
    for (int i = 0; i < g.journalRecords(); i++) {
      long seq = layout.recordSeq(i);
      if (seq == CacheLayout.FREE) {
        continue;
      }
      if (!CacheLayout.isCommitted(seq, acceptBelow)) {
        scan.uncommittedRecords.add(i);
        continue;
      }
      CacheLayout.Record r = layout.readRecord(i);
      if (r == null) {
        scan.problems.add("journal record " + i + " is committed but not a valid record");
        continue;
      }
      if (r.victimSlot() >= fileSlots) {
        scan.problems.add("journal record " + i + " names file slot " + r.victimSlot()
            + " as the file it removes; there are only " + fileSlots);
        continue;
      }
      if (r.fileSlot() >= fileSlots || (r.fileSlot() >= 0 && scan.files[r.fileSlot()] == null
          && seq < seqCount)) {
        scan.problems.add("journal record " + i + " (" + r.op() + " " + r.path1() + ") names"
            + " file slot " + r.fileSlot() + ", which holds no file");
        continue;
      }
      if (r.fileSlot() >= 0 && scan.files[r.fileSlot()] == null) {
        scan.uncommittedRecords.add(i); // same boot: its file's version never got stored
        continue;
      }
      scan.records.add(r);
      if (r.fileSlot() >= 0) {
        scan.slotsInRecords.add(r.fileSlot());
      }
      if (seq >= seqCount) {
        scan.openEpochRecords.add(i);
      }
    }
    scan.records.sort((a, b) -> Long.compare(a.order(), b.order()));
    LongIntMap newest = new LongIntMap();
    int n = 0;
    for (int s = 0; s < order.length; s++) {
      long seq = layout.entrySeq(s);
      if (seq == CacheLayout.FREE) {
        continue;
      }
      if (!CacheLayout.isCommitted(seq, acceptBelow)) {
        scan.stale.add(s);
        continue;
      }
      long loc = layout.entryLocation(s);
      int fs = CacheLayout.locationFileSlot(loc);
      FileRecord file = fs >= 0 && fs < fileSlots ? scan.files[fs] : null;
      if (file == null && seq >= seqCount) {
        scan.stale.add(s); // a write in flight: its file's version never got stored
        continue;
      }
      if (file == null) {
        // A file slot is freed only after every entry naming it: this cannot happen.
        scan.problems.add("committed entry " + s + " names file slot " + fs + ", which holds"
            + " no file");
        continue;
      }
      if (seq >= (1L << (63 - SLOT_BITS))) {
        scan.problems.add("entry " + s + " has seq " + seq + ", out of range");
        continue;
      }
      long b = CacheLayout.locationBlock(loc);
      if (b * layout.geometry().blockSize() >= file.v().size()) {
        scan.stale.add(s); // past the size a later truncate recorded
        continue;
      }
      int other = newest.get(loc);
      if (other >= 0) {
        long otherSeq = layout.entrySeq(other);
        if (otherSeq == seq) {
          scan.problems.add("entries " + other + " and " + s + " both hold block " + b + " of "
              + file.v().path() + " with seq " + seq);
          continue;
        }
        if (otherSeq > seq) {
          scan.stale.add(s);
          continue;
        }
        scan.stale.add(other);
      }
      newest.put(loc, s);
      order[n++] = seq << SLOT_BITS | s;
    }
    // Keep only the winners, oldest first: the order writeback follows.
    int kept = 0;
    for (int i = 0; i < n; i++) {
      int s = (int) (order[i] & ((1L << SLOT_BITS) - 1));
      if (newest.get(layout.entryLocation(s)) == s) {
        order[kept++] = order[i];
      }
    }
    Arrays.sort(order, 0, kept);
    scan.live = new int[kept];
    for (int i = 0; i < kept; i++) {
      scan.live[i] = (int) (order[i] & ((1L << SLOT_BITS) - 1));
      if (layout.entrySeq(scan.live[i]) >= seqCount) {
        scan.openEpochEntries.add(scan.live[i]);
      }
    }
    return scan;
  }
}
