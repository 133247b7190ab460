package io.wcfs.fs;

import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Who receives the next request. The leader processes what it receives itself and stays
 * leader, so in-memory requests (cache writes, commits) run back to back on one thread with
 * no handoff and no wakeup between them, and only the leader waits on /dev/fuse, so a request
 * wakes one thread, not all. A request that may wait for the disk gives the leadership up
 * first ({@link FuseLoop#handOff}); the watchdog takes it from a request stuck longer than
 * FuseLoop's STALL_NANOS (a writer waiting for cache space, a file lock held by a rename's
 * writeback), so one slow request never holds up the others for long. Exclusivity is only
 * an optimization: were two workers receiving at once, both would just get requests.
 */
final class Leadership {
  private final Semaphore token = new Semaphore(1);
  private final AtomicLong tickets = new AtomicLong();
  /** The ticket of the current leader; 0 while nobody holds the token. */
  private final AtomicLong holder = new AtomicLong();
  private volatile Thread holderThread;
  /** When the leader began processing its current request; 0 while it is receiving. */
  private volatile long busySince;

  long acquire() {
    token.acquireUninterruptibly();
    long t = tickets.incrementAndGet();
    holderThread = Thread.currentThread();
    holder.set(t);
    return t;
  }

  /** Whether {@code thread} is the leader now. */
  boolean heldBy(Thread thread) {
    return holder.get() != 0 && holderThread == thread; // holderThread outlives a release
  }

  boolean holds(long ticket) {
    return ticket != 0 && holder.get() == ticket;
  }

  void busy(long ticket, boolean processing) {
    if (holds(ticket)) {
      busySince = processing ? System.nanoTime() : 0;
    }
  }

  void release(long ticket) {
    if (ticket != 0 && holder.compareAndSet(ticket, 0)) {
      busySince = 0;
      token.release();
    }
  }

  void handOff(Thread thread) {
    long t = holder.get();
    if (holderThread == thread) {
      release(t);
    }
  }

  void releaseIfStalled(long stallNanos) {
    long t = holder.get();
    long since = busySince;
    if (t != 0 && since != 0 && System.nanoTime() - since > stallNanos) {
      release(t);
    }
  }
}
