package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The backing fsyncs a commit owes before it touches the cache memory: backing files of
 * write-through files and of size-only changes (truncate up, fallocate) of files with nothing
 * in the cache. {@link Epochs#commit} takes a ticket and runs {@link #syncBackingFiles} first,
 * before {@code commitLock}. Fields marked "guarded by index" are guarded by the engine's
 * index monitor ({@link SlotTable}); the locks are ordered as {@link WriteCache} says.
 */
final class BackingSyncs {
  /** The commit's logger: a failed backing fsync fails a commit, and log filters name it. */
  private static final Logger LOG = LoggerFactory.getLogger(Epochs.class);

  private final SlotTable table;
  private final FileRegistry files;

  /**
   * Serializes the backing fsyncs of {@code writeThroughDirty}: without it, a second fsync
   * found the list empty and returned before the first one's backing fsync had finished.
   */
  private final ReentrantLock writeThroughLock = new ReentrantLock();
  /** Guarded by writeThroughLock: the last failed backing fsync, reported as described there. */
  private IOException writeThroughFailure;
  /** Guarded by writeThroughLock: commits whose ticket is at most this report the failure. */
  private long writeThroughFailureTicket;
  /** One per commit, in the order commits begin; atomic, no lock. */
  private final java.util.concurrent.atomic.AtomicLong commitTickets =
      new java.util.concurrent.atomic.AtomicLong();
  /**
   * Guarded by index. Files whose backing file the next commit fsyncs: write-through files,
   * and size-only changes (truncate up, fallocate) of files with nothing in the cache.
   */
  private List<CachedFile> writeThroughDirty = new ArrayList<>();

  BackingSyncs(SlotTable table, FileRegistry files) {
    this.table = table;
    this.files = files;
  }

  /** Needs index. Something is owed to the next commit besides blocks: backing fsyncs. */
  boolean owesBackingSyncs() {
    return !writeThroughDirty.isEmpty();
  }

  /** The next commit fsyncs f's backing file (write-through, or a size-only change). */
  void queueBackingSync(CachedFile f) {
    if (f.dead) {
      return; // a spilled file (Spill#spill): nothing of it outlives a crash
    }
    synchronized (table) {
      f.owesBackingSync = true;
      if (!writeThroughDirty.contains(f)) {
        writeThroughDirty.add(f);
      }
    }
  }

  /** A commit's ticket, taken as it begins: which backing fsync failures it reports. */
  long ticket() {
    return commitTickets.incrementAndGet();
  }

  /**
   * fsyncs the backing files of write-through files and size-only changes. A failure is
   * reported to this commit and to every commit that began before it was seen (they may cover
   * the same writes), and the files stay queued for the next one: an fsync error is never
   * forgotten into a later success of a commit that overlapped it.
   */
  void syncBackingFiles(long ticket) throws IOException {
    writeThroughLock.lock();
    try {
      List<CachedFile> syncFiles;
      synchronized (table) {
        syncFiles = writeThroughDirty;
        if (!syncFiles.isEmpty()) {
          writeThroughDirty = new ArrayList<>();
        }
        for (CachedFile f : syncFiles) {
          f.owesBackingSync = false; // a write from here on queues it again
          f.backingSyncRunning = true; // its descriptor stays open until the sync is done
        }
      }
      for (int i = 0; i < syncFiles.size(); i++) {
        CachedFile f = syncFiles.get(i);
        try {
          BackingStore.BackingFile file;
          synchronized (f) {
            file = f.file;
          }
          if (file != null || (f.path != null && !f.dead)) { // else never opened, name gone
            (file != null ? file : files.backingFile(f)).sync(); // write-through: backing fsync
          }
          synchronized (table) {
            f.backingSyncRunning = false;
          }
          if (f.lock.writeLock().tryLock()) { // no wait: a commit may hold another file's
            try {
              synchronized (table) {
                files.forgetIfUnused(f);
              }
            } finally {
              f.lock.writeLock().unlock();
            }
          }
        } catch (IOException e) {
          for (CachedFile g : syncFiles.subList(i, syncFiles.size())) {
            synchronized (table) {
              g.backingSyncRunning = false;
            }
            queueBackingSync(g);
          }
          writeThroughFailure = new IOException("fsync of backing file " + f.path + " failed: "
              + e.getMessage(), e);
          writeThroughFailureTicket = commitTickets.get();
          LOG.warn("{}", writeThroughFailure.getMessage());
          break;
        }
      }
      if (writeThroughFailure != null && ticket <= writeThroughFailureTicket) {
        throw writeThroughFailure;
      }
    } finally {
      writeThroughLock.unlock();
    }
  }
}
