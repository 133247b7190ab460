package io.wcfs.fs;

import io.wcfs.core.CacheStats;
import java.util.LinkedHashMap;
import java.util.Map;

/** The status fields, as a readable table or as JSON. */
final class StatusReport {
  private StatusReport() {}

  static Map<String, Object> fields(CacheStats s, Map<String, Object> mount) {
    Map<String, Object> m = new LinkedHashMap<>(mount);
    m.put("backend", s.memory());
    m.put("error", s.error() == null ? "none" : s.error());
    m.put("block_size", s.blockSize());
    m.put("blocks", s.blocks());
    m.put("free_blocks", s.freeBlocks());
    m.put("dirty_blocks", s.dirtyBlocks());
    m.put("dirty_bytes", s.dirtyBlocks() * s.blockSize());
    m.put("uncommitted_blocks", s.uncommittedBlocks());
    m.put("oldest_dirty_age_ms", s.oldestDirtyAgeMs());
    m.put("writeback_blocks_in_flight", s.writebackBlocks());
    m.put("written_back_blocks", s.writtenBackBlocks());
    m.put("writeback_errors", s.writebackErrors());
    m.put("last_writeback_error", s.lastWritebackError() == null ? "none" : s.lastWritebackError());
    m.put("recovery", s.recovery());
    m.put("inode_hint_mismatches", s.inodeHintMismatches());
    m.put("lost_and_found_files", s.lostAndFoundFiles());
    CacheStats.JournalStats j = s.journal();
    m.put("journal_records", j.records());
    m.put("journal_pending", j.pending());
    m.put("journal_appended", j.appended());
    m.put("journal_applied", j.applied());
    m.put("creates_elided", j.createsElided());
    m.put("journal_full_waits", j.fullWaits());
    m.put("overlay_names", j.overlayNames());
    m.put("reads", s.reads());
    m.put("read_hits", s.readHits());
    m.put("writes", s.writes());
    m.put("write_hits_uncommitted", s.writeHitsUncommitted());
    m.put("write_hits_committed", s.writeHitsCommitted());
    m.put("writes_allocated", s.writesAllocated());
    m.put("writes_blocked_on_freelist", s.writesBlockedOnFreelist());
    m.put("writers_waiting_now", s.blockedWriters());
    m.put("flushes", s.flushes());
    m.put("device_flushes", s.deviceFlushes());
    m.put("commit_latency_p50_us", s.commitP50Nanos() / 1000.0);
    m.put("commit_latency_p99_us", s.commitP99Nanos() / 1000.0);
    m.put("commit_latency_max_us", s.commitMaxNanos() / 1000.0);
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
