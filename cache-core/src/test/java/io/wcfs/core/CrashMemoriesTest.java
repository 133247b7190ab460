package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The crash-simulating memories model the three-step API as DESIGN.md states it, for every
 * strategy including a cache file on a disk: a store is durable only after a commit that
 * followed its flush; a flush alone guarantees nothing; a commit covers everything flushed
 * before it began, also when another thread's commit is still writing it.
 */
class CrashMemoriesTest {
  @TempDir Path tmp;

  private static final java.util.function.LongPredicate NONE = off -> false;
  private static final java.util.function.LongPredicate ALL = off -> true;

  @Test
  @DisplayName("CrashingMemory: durable only after flush then commit; pending stores may or"
      + " may not survive")
  void crashingMemoryModel() {
    CrashingMemory m = new CrashingMemory(4096);
    m.assign(0, 1);
    m.flush(0, 8);
    m.assign(8, 2); // stored, never flushed
    assertEquals(0, m.crash(NONE).readLong(0), "flushed, not committed: not durable");
    assertEquals(1, m.crash(ALL).readLong(0), "...but it may have reached the medium");
    m = new CrashingMemory(4096);
    m.assign(0, 1);
    m.flush(0, 8);
    m.assign(8, 2);
    m.commit();
    CrashingMemory after = m.crash(NONE);
    assertEquals(1, after.readLong(0), "flushed, then committed: durable");
    assertEquals(0, after.readLong(8), "committed without a flush: not durable");
    m = new CrashingMemory(4096);
    m.assign(0, 1);
    m.flush(0, 8);
    m.commit();
    m.assign(0, 3); // stored again after its flush: needs another flush
    m.commit();
    assertEquals(1, m.crash(NONE).readLong(0), "a store after the flush is not covered");
    assertEquals(3, m.crash(ALL).readLong(0));
  }

  /** A memory whose copyOut (the shadow's read of a flushed range) can be held. */
  private static final class HeldCopyMemory extends ForwardingMemory {
    final CountDownLatch inCopy = new CountDownLatch(1);
    final CountDownLatch release = new CountDownLatch(1);
    volatile boolean hold;

    HeldCopyMemory(CacheMemory inner) {
      super(inner);
    }

    @Override
    public void copyOut(long offset, long dstAddress, long length) throws IOException {
      if (hold && offset == 0) {
        inCopy.countDown();
        try {
          release.await();
        } catch (InterruptedException e) {
          throw new IOException(e);
        }
      }
      super.copyOut(offset, dstAddress, length);
    }
  }

  @Test
  @DisplayName("ShadowCrashMemory: a commit returns only once every range flushed before it"
      + " is in the shadow, also while another commit is still copying it")
  void shadowCommitCoversRangesAnotherCommitTook() throws Exception {
    Path cacheFile = tmp.resolve("cache");
    Files.write(cacheFile, new byte[1 << 16]);
    HeldCopyMemory inner = new HeldCopyMemory(new CrashingMemory(1 << 16));
    ShadowCrashMemory shadow = ShadowCrashMemory.wrap(inner, cacheFile);
    Path shadowFile = ShadowCrashMemory.shadowOf(cacheFile);
    try {
      inner.hold = true;
      shadow.assign(0, 0x1111);
      shadow.flush(0, 8);
      CompletableFuture<Void> a = CompletableFuture.runAsync(() -> commit(shadow));
      inner.inCopy.await(); // A took its range and is copying it to the shadow
      shadow.assign(4096, 0x2222);
      shadow.flush(4096, 8);
      CompletableFuture<Void> b = CompletableFuture.runAsync(() -> commit(shadow));
      try {
        b.get(300, TimeUnit.MILLISECONDS);
        // B's commit returned: the range flushed before it began must be in the shadow.
        assertEquals(0x1111, wordAt(shadowFile, 0), "a commit returned while a range flushed"
            + " before it began was not in the shadow: a kill now would lose it");
      } catch (TimeoutException expected) {
        // B waits for A's copy: right.
      }
      inner.release.countDown();
      a.get(10, TimeUnit.SECONDS);
      b.get(10, TimeUnit.SECONDS);
      assertEquals(0x1111, wordAt(shadowFile, 0));
      assertEquals(0x2222, wordAt(shadowFile, 4096));
      // And a flush alone reaches nothing.
      shadow.assign(8192, 0x3333);
      shadow.flush(8192, 8);
      assertEquals(0, wordAt(shadowFile, 8192), "flushed, not committed");
    } finally {
      inner.release.countDown();
      shadow.close();
    }
  }

  private static void commit(CacheMemory m) {
    try {
      m.commit();
    } catch (IOException e) {
      throw new RuntimeException(e);
    }
  }

  private static long wordAt(Path file, long offset) throws IOException {
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "r")) {
      byte[] b = new byte[8];
      f.seek(offset);
      f.readFully(b);
      return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }
  }

  /** Delegates everything to another memory. */
  private static class ForwardingMemory implements CacheMemory {
    private final CacheMemory inner;

    ForwardingMemory(CacheMemory inner) {
      this.inner = inner;
    }

    @Override
    public long size() {
      return inner.size();
    }

    @Override
    public void copyIn(long offset, long srcAddress, long length) throws IOException {
      inner.copyIn(offset, srcAddress, length);
    }

    @Override
    public void assign(long offset, long value) throws IOException {
      inner.assign(offset, value);
    }

    @Override
    public void flush(long offset, long length) throws IOException {
      inner.flush(offset, length);
    }

    @Override
    public void commit() throws IOException {
      inner.commit();
    }

    @Override
    public long readLong(long offset) throws IOException {
      return inner.readLong(offset);
    }

    @Override
    public void copyOut(long offset, long dstAddress, long length) throws IOException {
      inner.copyOut(offset, dstAddress, length);
    }

    @Override
    public String describe() {
      return inner.describe();
    }

    @Override
    public void close() throws IOException {
      inner.close();
    }
  }
}
