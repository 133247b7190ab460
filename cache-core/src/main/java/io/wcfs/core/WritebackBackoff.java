package io.wcfs.core;

import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How the writeback thread meets failures: each one counted (status shows the last), logged
 * once while it lasts, and retried with backoff, from 100 ms doubling up to 5 s. Data batches
 * and the journal's application back off apart. Part of {@link Writeback}: the backoff
 * deadlines are guarded by the engine's index monitor ({@link SlotTable}), under which the
 * thread decides what to do next; the rest is the writeback thread's alone.
 */
final class WritebackBackoff {
  /** Writeback's logger: these are the writeback thread's messages. */
  private static final Logger LOG = LoggerFactory.getLogger(Writeback.class);

  private final SlotTable table;
  private final Counters.Writeback counters;
  /**
   * Errors logged since writeback last succeeded: one that lasts (a backing file nobody made
   * writable yet) is logged once, not once per retry; status shows it all along. The
   * writeback thread's alone, as the two delays below.
   */
  private final Set<String> logged = new HashSet<>();
  private long backoffMs = 100;
  private long journalBackoffMs = 100;
  /** Guarded by index: no writeback batch before this nanoTime (after a backing error). */
  private long writebackBackoffUntil;
  /**
   * Guarded by index: no journal application before this nanoTime (after one failed). Data of
   * files no pending record names goes on meanwhile, so a record the backing directory keeps
   * refusing (EACCES, ENOSPC) does not stop all writeback and fill the cache.
   */
  private long journalBackoffUntil;

  WritebackBackoff(SlotTable table, Counters.Writeback counters) {
    this.table = table;
    this.counters = counters;
  }

  /** Needs index. Whether data writeback waits at {@code now} after a failed batch. */
  boolean writebackBackingOff(long now) {
    return now < writebackBackoffUntil;
  }

  /** Needs index. Whether the journal's application waits at {@code now} after a failure. */
  boolean journalBackingOff(long now) {
    return now < journalBackoffUntil;
  }

  /** The writeback thread applied the journal's records. */
  void journalApplied() {
    journalBackoffMs = 100;
  }

  /** The writeback thread's application of the journal failed: the records stay, retried. */
  void journalFailed(Exception e) {
    counters.failed("applying the namespace journal: " + e.getMessage());
    if (logged.add(e.toString())) {
      LOG.warn("applying a namespace record to the backing directory failed; it stays"
          + " in the cache's journal and is retried with backoff (not logged again"
          + " until it works): {}", e.toString());
    }
    synchronized (table) {
      journalBackoffUntil = System.nanoTime()
          + TimeUnit.MILLISECONDS.toNanos(journalBackoffMs);
    }
    journalBackoffMs = Math.min(5000, journalBackoffMs * 2);
  }

  /** A writeback batch went through; {@code wroteAny}: it had blocks to write. */
  void batchDone(boolean wroteAny) {
    backoffMs = 100;
    if (!logged.isEmpty() && wroteAny) {
      LOG.info("writeback works again");
      logged.clear();
    }
  }

  /** A writeback batch (or the wait and commit before it) failed: blocks stay, retried. */
  void batchFailed(Exception e) {
    counters.failed(e.getMessage());
    if (logged.size() >= 64) {
      logged.clear(); // errors that differ every time: keep the set small, log anew
    }
    if (logged.add(e.toString())) {
      LOG.warn("writeback failed, blocks stay in the cache, retrying with backoff (this"
          + " error is not logged again until writeback works): {}", e.toString());
    } else {
      LOG.debug("writeback failed again, retrying in {} ms: {}", backoffMs, e.toString());
    }
    synchronized (table) {
      writebackBackoffUntil = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(backoffMs);
    }
    backoffMs = Math.min(5000, backoffMs * 2);
  }
}
