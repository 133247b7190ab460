package io.wcfs.fs;

import io.wcfs.core.CacheStats;
import java.util.LinkedHashMap;
import java.util.Map;

/** The status fields, as a readable table or as JSON. */
final class StatusReport {
  private StatusReport() {}

  static Map<String, Object> fields(CacheStats s, Map<String, Object> mount) {
    CacheStats.SpaceStats space = s.space();
    CacheStats.WritebackStats wb = s.writeback();
    CacheStats.RecoveryStats rec = s.recovery();
    CacheStats.JournalStats j = s.journal();
    CacheStats.IoStats io = s.io();
    CacheStats.CommitStats c = s.commits();
    Map<String, Object> m = new LinkedHashMap<>(mount);
    m.put("backend", c.memory());
    m.put("error", s.error() == null ? "none" : s.error());
    m.put("block_size", space.blockSize());
    m.put("blocks", space.blocks());
    m.put("free_blocks", space.freeBlocks());
    m.put("dirty_blocks", space.dirtyBlocks());
    m.put("dirty_bytes", space.dirtyBlocks() * space.blockSize());
    m.put("uncommitted_blocks", space.uncommittedBlocks());
    m.put("oldest_dirty_age_ms", space.oldestDirtyAgeMs());
    m.put("writeback_blocks_in_flight", wb.inFlightBlocks());
    m.put("written_back_blocks", wb.writtenBackBlocks());
    m.put("writeback_errors", wb.errors());
    m.put("last_writeback_error", wb.lastError() == null ? "none" : wb.lastError());
    m.put("recovery", rec.what());
    m.put("inode_hint_mismatches", rec.inodeHintMismatches());
    m.put("lost_and_found_files", rec.lostAndFoundFiles());
    m.put("journal_records", j.records());
    m.put("journal_pending", j.pending());
    m.put("journal_appended", j.appended());
    m.put("journal_applied", j.applied());
    m.put("creates_elided", j.createsElided());
    m.put("journal_full_waits", j.fullWaits());
    m.put("overlay_names", j.overlayNames());
    m.put("stray_files_taken_back", j.strayFiles());
    m.put("reads", io.reads());
    m.put("read_hits", io.readHits());
    m.put("writes", io.writes());
    m.put("write_hits_uncommitted", io.writeHitsUncommitted());
    m.put("write_hits_committed", io.writeHitsCommitted());
    m.put("writes_allocated", io.writesAllocated());
    m.put("writes_blocked_on_freelist", wb.writesBlockedOnFreelist());
    m.put("unlinked_files_spilled", wb.spilledFiles());
    m.put("writers_waiting_now", space.writersWaiting());
    m.put("flushes", c.flushes());
    m.put("device_flushes", c.deviceFlushes());
    m.put("commit_latency_p50_us", c.p50Nanos() / 1000.0);
    m.put("commit_latency_p99_us", c.p99Nanos() / 1000.0);
    m.put("commit_latency_max_us", c.maxNanos() / 1000.0);
    return m;
  }

  static String table(Map<String, Object> m) {
    StringBuilder sb = new StringBuilder();
    for (Map.Entry<String, Object> e : m.entrySet()) {
      sb.append(String.format("%-28s %s%n", e.getKey(), e.getValue()));
    }
    return sb.toString();
  }

  static String json(Map<String, Object> m) {
    StringBuilder sb = new StringBuilder("{");
    for (Map.Entry<String, Object> e : m.entrySet()) {
      if (sb.length() > 1) {
        sb.append(", ");
      }
      sb.append('"').append(e.getKey()).append("\": ");
      Object v = e.getValue();
      if (v instanceof Number) {
        sb.append(v);
      } else {
        sb.append('"').append(String.valueOf(v).replace("\\", "\\\\").replace("\"", "\\\""))
            .append('"');
      }
    }
    return sb.append("}").toString();
  }
}
