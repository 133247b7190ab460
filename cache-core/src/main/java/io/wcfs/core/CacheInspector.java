package io.wcfs.core;

import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Offline verification of a cache file ({@code wcfs check}): validates the superblock, then
 * reads every file version and entry without changing a byte, and reports what a mount would
 * recover and every inconsistency it would refuse.
 */
public final class CacheInspector {
  private CacheInspector() {}

  /**
   * The findings: a readable report, whether the cache is consistent, and what it holds that
   * the backing directory does not have yet (blocks, and namespace records).
   */
  public record Report(String text, boolean ok, long committedBlocks, long journalRecords) {
    Report(String text, boolean ok, long committedBlocks) {
      this(text, ok, committedBlocks, 0);
    }

    /** Whether anything committed waits to be written back (blocks or names). */
    public boolean holdsData() {
      return committedBlocks > 0 || journalRecords > 0;
    }
  }

  /**
   * Whether this is a cache of format version 1 (an older wcfs), which opening it converts:
   * its data is written back and the cache formatted as the current version.
   */
  public static boolean isFormatVersion1(CacheMemory mem) throws IOException {
    return LegacyV1Cache.isVersion1(mem);
  }

  public static Report inspect(CacheMemory mem) throws IOException {
    StringBuilder out = new StringBuilder();
    CacheLayout.Contents contents = CacheLayout.inspect(mem);
    if (contents == CacheLayout.Contents.ZERO_FILLED) {
      return new Report("zero-filled file: the next mount formats it\n", true, 0);
    }
    if (contents == CacheLayout.Contents.FORMAT_INTERRUPTED) {
      return new Report("a format that was interrupted before it finished; holds no data, and"
          + " the next mount (or wcfs format) formats it again\n", true, 0);
    }
    if (contents == CacheLayout.Contents.FOREIGN) {
      return new Report("not a wcfs cache (bad magic); a mount refuses it and leaves it"
          + " untouched\n", false, 0);
    }
    if (LegacyV1Cache.isVersion1(mem)) {
      try {
        LegacyV1Cache v1 = LegacyV1Cache.read(mem, null, 0);
        return new Report(describeVersion1(v1), v1.problems.isEmpty(), v1.committedBlocks);
      } catch (CacheFormatException e) {
        return new Report("superblock: " + e.getMessage() + "\n", false, 0);
      }
    }
    CacheLayout layout;
    try {
      layout = CacheLayout.open(mem, null);
    } catch (CacheFormatException e) {
      return new Report("superblock: " + e.getMessage() + "\n", false, 0);
    }
    CacheLayout.Geometry g = layout.geometry();
    // One scan decides everything below, as recovery's does (a second reading of the commit
    // records on a live cache could see a later commit).
    CacheScan scan = CacheScan.of(layout);
    long seqCount = scan.seqCount;
    out.append(String.format("wcfs cache, format version %d%n", layout.version()));
    out.append(String.format("backing directory  %s (inode %d)%n", layout.backingIdentity().path(),
        layout.backingIdentity().ino()));
    out.append(String.format("blocks             %d x %d bytes%n", g.nBlocks(), g.blockSize()));
    out.append(String.format("file slots         %d%n", g.fileSlots()));
    out.append(String.format("seq_count          %d%s%n", seqCount,
        seqCount == layout.seqCount() ? ""
            : " (superblock " + layout.seqCount() + ", the rest proved by commit records)"));
    Map<Integer, Long> blocksPerFile = new HashMap<>();
    for (int s : scan.live) {
      blocksPerFile.merge(CacheLayout.locationFileSlot(layout.entryLocation(s)), 1L, Long::sum);
    }
    long committed = scan.live.length;
    long uncommitted = 0;
    for (int i = 0; i < scan.stale.size(); i++) {
      if (!CacheLayout.isCommitted(layout.entrySeq(scan.stale.get(i)), seqCount)) {
        uncommitted++;
      }
    }
    Map<Integer, CacheLayout.FileVersion> files = new TreeMap<>();
    for (CacheScan.FileRecord r : scan.files) {
      if (r != null) {
        files.put(r.slot(), r.v());
      }
    }
    List<String> problems = scan.problems;
    boolean ok = true;
    out.append(String.format("committed blocks   %d (dirty, waiting for writeback)%n", committed));
    out.append(String.format("uncommitted blocks %d (discarded by a mount after a reboot; a"
        + " mount in the boot the daemon died in keeps those whose writes had completed)%n",
        uncommitted));
    out.append(String.format("files              %d%n", files.size()));
    for (Map.Entry<Integer, CacheLayout.FileVersion> e : files.entrySet()) {
      CacheLayout.FileVersion f = e.getValue();
      String name = f.dead() ? "(slot " + e.getKey() + ": removed, waits for its records)"
          : f.absent() ? "(slot " + e.getKey() + ": created in the cache, see the journal)"
          : f.path();
      out.append(String.format("  %-40s size %d, %d blocks, inode %d%n", name, f.size(),
          blocksPerFile.getOrDefault(e.getKey(), 0L), f.ino()));
    }
    out.append(String.format("journal records    %d committed, not yet applied to the backing"
        + " directory (of %d)%n", scan.records.size(), g.journalRecords()));
    for (CacheLayout.Record r : scan.records) {
      out.append(String.format("  %-6s %s%s%s%n", r.op(), r.path1(),
          r.path2() == null ? "" : " -> " + r.path2(),
          r.fileSlot() < 0 ? "" : " (file slot " + r.fileSlot() + ")"));
    }
    for (String p : problems) {
      out.append("PROBLEM: ").append(p).append('\n');
      ok = false;
    }
    out.append(ok ? "consistent\n" : "INCONSISTENT: a mount refuses this cache\n");
    return new Report(out.toString(), ok, committed, scan.records.size());
  }

  /**
   * The report on a version 1 cache: what it holds and what the next mount does with it (it
   * writes it back and formats the cache as the current version).
   */
  private static String describeVersion1(LegacyV1Cache v1) {
    StringBuilder out = new StringBuilder();
    out.append(String.format("wcfs cache, format version 1 (written by an older wcfs, before"
        + " the namespace journal)%n"));
    out.append(String.format("backing directory  %s (inode %d)%n", v1.backing.path(),
        v1.backing.ino()));
    out.append(String.format("blocks             %d x %d bytes%n", v1.geometry.nBlocks(),
        v1.geometry.blockSize()));
    out.append(String.format("seq_count          %d%n", v1.seqCount));
    out.append(String.format("committed blocks   %d%n", v1.committedBlocks));
    out.append(String.format("uncommitted blocks %d (discarded)%n", v1.uncommittedBlocks));
    out.append(String.format("files              %d%n", v1.files.size()));
    for (int i = v1.files.size() - 1; i >= 0; i--) { // by slot, lowest first
      LegacyV1Cache.File f = v1.files.get(i);
      out.append(String.format("  %-40s size %d, %d blocks, inode %d%s%n", f.path(), f.size(),
          v1.blocks.getOrDefault(f.slot(), List.of()).size(), f.ino(),
          f.unlinking() ? ", being unlinked" : ""));
    }
    for (String p : v1.problems) {
      out.append("PROBLEM: ").append(p).append('\n');
    }
    if (v1.problems.isEmpty()) {
      out.append(String.format("the next mount over %s (or `wcfs writeback`) writes these %d"
          + " committed blocks back there and formats the cache as version %d%n",
          v1.backing.path(), v1.committedBlocks, CacheLayout.VERSION));
    } else {
      out.append("INCONSISTENT: a mount refuses this cache and leaves it unchanged\n");
    }
    return out.toString();
  }
}
