package io.wcfs.core;

import io.wcfs.nativ.NativeBuffer;
import java.util.BitSet;
import java.util.Random;

/**
 * A cache memory that remembers what is durable, after Lucene's MockDirectoryWrapper.crash():
 * every 8-byte word is either durable, stored (written, not flushed) or flushed (not yet
 * committed). {@link #crash} keeps a random subset of the words that were not committed, word by
 * word: only aligned 8-byte stores are atomic. {@link #crashAfter} makes the n-th later
 * operation throw {@link SimulatedCrash}, to crash in the middle of a commit or a write.
 */
final class CrashingMemory implements CacheMemory {
  /** Thrown by a memory operation when the countdown set by {@link #crashAfter} runs out. */
  static final class SimulatedCrash extends RuntimeException {
    SimulatedCrash() {
      super("simulated crash");
    }
  }

  private final byte[] current;
  private final byte[] durable;
  private final BitSet stored = new BitSet();
  private final BitSet flushed = new BitSet();
  private long countdown = -1;
  private boolean crashed;
  /**
   * What {@link #commitFlushesDevice} answers: true by default, so that the engine commits
   * epochs with commit records as on a disk cache (the path whose torn commits need checking);
   * false models persistent memory's two-step commit.
   */
  private boolean flushesDevice = true;
  private long commits;

  CrashingMemory(int size) {
    this(new byte[size]);
  }

  static CrashingMemory of(byte[] image) {
    return new CrashingMemory(image);
  }

  private CrashingMemory(byte[] image) {
    current = image.clone();
    durable = image.clone();
  }

  /** The n-th memory operation from now throws (n = 0: the next one). */
  synchronized void crashAfter(long n) {
    countdown = n;
  }

  /** Operations left before the armed crash (0: the next one crashes), or -1: none armed. */
  synchronized long countdown() {
    return countdown;
  }

  synchronized boolean hasCrashed() {
    return crashed;
  }

  /**
   * What a restart of the daemon alone finds (kill -9, same boot): every store it made, flushed
   * or not; a copy in progress at the crash kept up to where it got. What was not committed
   * is still not durable: a power loss after the restart may drop any of it, until the next
   * commit that follows its flush.
   */
  synchronized CrashingMemory processCrash() {
    crashed = true;
    CrashingMemory after = new CrashingMemory(current).flushesDevice(flushesDevice);
    System.arraycopy(durable, 0, after.durable, 0, durable.length);
    after.stored.or(stored);
    return after;
  }

  /** Sets what {@link #commitFlushesDevice} answers; returns this memory. */
  CrashingMemory flushesDevice(boolean flushes) {
    flushesDevice = flushes;
    return this;
  }

  @Override
  public boolean commitFlushesDevice() {
    return flushesDevice;
  }

  /** What a restart would find: the durable image plus a random subset of pending words. */
  synchronized CrashingMemory crash(Random random) {
    return crash(offset -> random.nextBoolean());
  }

  /**
   * What a restart would find if of the pending words (stored, flushed or not, but not
   * committed) exactly those whose byte offset {@code keep} accepts had reached the medium:
   * for tests that need one particular torn state.
   */
  synchronized CrashingMemory crash(java.util.function.LongPredicate keep) {
    CrashingMemory after = powerLossImage(keep);
    crashed = true;
    return after;
  }

  /**
   * What a power loss now would leave ({@link #crash}'s image), while this memory goes on: for
   * tests that look at several moments of one run.
   */
  synchronized CrashingMemory powerLossImage(java.util.function.LongPredicate keep) {
    byte[] image = durable.clone();
    for (int w = stored.nextSetBit(0); w >= 0; w = stored.nextSetBit(w + 1)) {
      if (keep.test(w * 8L)) {
        System.arraycopy(current, w * 8, image, w * 8, 8);
      }
    }
    return new CrashingMemory(image).flushesDevice(flushesDevice);
  }

  private void tick() {
    if (crashed) {
      throw new SimulatedCrash();
    }
    if (countdown >= 0 && countdown-- == 0) {
      crashed = true;
      throw new SimulatedCrash();
    }
  }

  private void markStored(long offset, long length) {
    int from = (int) (offset / 8);
    int to = (int) ((offset + length + 7) / 8);
    stored.set(from, to);
    flushed.clear(from, to); // a store after a flush needs another flush
  }

  @Override
  public long size() {
    return current.length;
  }

  @Override
  public synchronized void copyIn(long offset, long srcAddress, long length) {
    try {
      tick();
    } catch (SimulatedCrash e) {
      // A copy cut by the crash: its first half of the words landed (a process crash keeps
      // them; a power failure keeps any subset of them anyway).
      long half = (length / 16) * 8;
      NativeBuffer.getBytes(srcAddress, current, (int) offset, (int) half);
      markStored(offset, half);
      throw e;
    }
    NativeBuffer.getBytes(srcAddress, current, (int) offset, (int) length);
    markStored(offset, length);
  }

  @Override
  public synchronized void assign(long offset, long value) {
    tick();
    if ((offset & 7) != 0) {
      throw new IllegalArgumentException("unaligned pmem_assign at " + offset);
    }
    for (int i = 0; i < 8; i++) {
      current[(int) offset + i] = (byte) (value >>> (8 * i));
    }
    markStored(offset, 8);
  }

  @Override
  public synchronized void flush(long offset, long length) {
    tick();
    int from = (int) (offset / 8);
    int to = (int) ((offset + length + 7) / 8);
    for (int w = stored.nextSetBit(from); w >= 0 && w < to; w = stored.nextSetBit(w + 1)) {
      flushed.set(w);
    }
  }

  /** Commits made so far (each a device flush on a disk cache). */
  synchronized long commits() {
    return commits;
  }

  /**
   * How long each commit waits, as a device flush does, with the memory free for other
   * threads meanwhile; 0 (the default): none.
   */
  private volatile long commitPauseNanos;

  /** Sets {@link #commitPauseNanos}; returns this memory. */
  CrashingMemory commitPause(long nanos) {
    commitPauseNanos = nanos;
    return this;
  }

  /** Commits in their pause now. */
  private int committing;
  /** {@link #startCommit} calls made while another commit paused: overlapped commits. */
  private long startedDuringCommit;

  synchronized long startedDuringCommit() {
    return startedDuringCommit;
  }

  /** Makes nothing durable (the next commit does); counts overlaps. */
  @Override
  public synchronized void startCommit() {
    tick();
    if (committing > 0) {
      startedDuringCommit++;
    }
  }

  /**
   * pmem_commit: the words flushed before the call become durable when it returns, with the
   * values they had when it began. During a pause other threads store, flush and commit; a
   * crash before the end leaves the words pending (any subset of them may survive it), and
   * a word stored again meanwhile stays pending with its new value.
   */
  @Override
  public void commit() {
    commitOrder.lock(); // as PageCacheSync: a commit returns after every earlier one ended
    try {
      commitInOrder();
    } finally {
      commitOrder.unlock();
    }
  }

  /** Serializes commits, not stores: others store and flush during a commit's pause. */
  private final java.util.concurrent.locks.ReentrantLock commitOrder =
      new java.util.concurrent.locks.ReentrantLock();

  private void commitInOrder() {
    int[] words;
    byte[] values;
    synchronized (this) {
      tick();
      committing++;
      words = flushed.stream().toArray();
      values = new byte[words.length * 8];
      for (int i = 0; i < words.length; i++) {
        System.arraycopy(current, words[i] * 8, values, i * 8, 8);
      }
      flushed.clear();
    }
    long pause = commitPauseNanos;
    if (pause > 0) {
      java.util.concurrent.locks.LockSupport.parkNanos(pause);
    }
    synchronized (this) {
      committing--;
      if (crashed) {
        throw new SimulatedCrash(); // the wait never ended: nothing became durable by it
      }
      commits++;
      for (int i = 0; i < words.length; i++) {
        int w = words[i];
        System.arraycopy(values, i * 8, durable, w * 8, 8);
        if (java.util.Arrays.equals(values, i * 8, i * 8 + 8, current, w * 8, w * 8 + 8)) {
          stored.clear(w);
        }
      }
    }
  }

  @Override
  public synchronized long readLong(long offset) {
    long v = 0;
    for (int i = 0; i < 8; i++) {
      v |= (current[(int) offset + i] & 0xFFL) << (8 * i);
    }
    return v;
  }

  @Override
  public synchronized void copyOut(long offset, long dstAddress, long length) {
    NativeBuffer.putBytes(dstAddress, current, (int) offset, (int) length);
  }

  /** Raw durable bytes, for tests that corrupt or inspect the image. */
  synchronized byte[] image() {
    return current.clone();
  }

  synchronized void pokeLong(int offset, long value) {
    for (int i = 0; i < 8; i++) {
      current[offset + i] = (byte) (value >>> (8 * i));
      durable[offset + i] = current[offset + i];
    }
  }

  @Override
  public String describe() {
    return "crash-simulating heap memory";
  }

  @Override
  public void close() {}
}
