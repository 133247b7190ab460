package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.wcfs.nativ.IoVec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Punch hole and zero range against crashes of both media. The backing file holds old bytes
 * under the range, the cache newer committed blocks over part of it: after a crash, every
 * block of the range must read as it did before the call or as zeros, and as zeros once the
 * call and a commit returned, never the backing file's old bytes that the cache had covered.
 */
class PunchHoleCrashTest {
  private static final int BS = 512;
  private static final int NBLOCKS = 64; // a write chunk is 16 blocks
  private static final int FILE_BLOCKS = 40;
  @TempDir Path tmp;

  /**
   * A power loss of the backing disk: {@code zeroRange} takes effect only at the file's next
   * {@code sync} (what a disk has not been told to make durable may be lost), and {@link
   * #powerLoss} forgets whatever is pending.
   */
  static final class PowerLossStore extends ForwardingBackingStore {
    final List<Runnable> pending = new ArrayList<>();
    final List<String> events = new ArrayList<>();

    PowerLossStore(Path root) throws IOException {
      super(new DirectoryBackingStore(root));
    }

    synchronized void powerLoss() {
      pending.clear();
    }

    @Override
    public BackingFile open(String path) throws IOException {
      BackingFile f = real.open(path);
      PowerLossStore store = this;
      return new BackingFile() {
        @Override
        public long read(long position, long dstAddress, long length) throws IOException {
          return f.read(position, dstAddress, length);
        }

        @Override
        public void write(long position, long srcAddress, long length) throws IOException {
          f.write(position, srcAddress, length);
        }

        @Override
        public void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
          f.writeBlocks(position, data, direct);
        }

        @Override
        public long size() throws IOException {
          return f.size();
        }

        @Override
        public void truncate(long size) throws IOException {
          f.truncate(size);
        }

        @Override
        public void zeroRange(long position, long length, boolean punch) {
          synchronized (store) {
            events.add((punch ? "punch " : "zero ") + position + " " + length);
            pending.add(() -> {
              try {
                f.zeroRange(position, length, punch);
              } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
              }
            });
          }
        }

        @Override
        public void sync() throws IOException {
          synchronized (store) {
            events.add("fsync");
            pending.forEach(Runnable::run);
            pending.clear();
          }
          f.sync();
        }

        @Override
        public void setMtime(long mtimeNanos) throws IOException {
          f.setMtime(mtimeNanos);
        }

        @Override
        public void close() throws IOException {
          f.close();
        }
      };
    }

    @Override
    public BackingFile create(String path, int mode, int uid, int gid) throws IOException {
      // through open(), so the file is wrapped like any other
      real.create(path, mode, uid, gid).close();
      return open(path);
    }

    // Names and attributes: passed through (this store defers only zeroed ranges).

              }

  private static byte[] filled(int blocks, char c) {
    byte[] b = new byte[blocks * BS];
    Arrays.fill(b, (byte) c);
    return b;
  }

  /**
   * Backing file: FILE_BLOCKS blocks of 'O' (old, durable). Cache: blocks 10..29 rewritten
   * with 'N' and committed, not written back.
   */
  private record Setup(Path root, PowerLossStore store, CrashingMemory mem, WriteCache cache,
      byte[] before) {}

  private Setup setUp(String name) throws IOException {
    Path root = Files.createDirectories(tmp.resolve(name));
    Files.write(root.resolve("f"), filled(FILE_BLOCKS, 'O'));
    PowerLossStore store = new PowerLossStore(root);
    CrashingMemory mem = CacheFixture.memoryFor(NBLOCKS, BS);
    CacheLayout.format(mem, BS, store.identity());
    WriteCache cache = WriteCache.openManual(mem, store, CacheFixture.manualConfig(BS));
    CacheFixture.write(cache, "f", 10 * BS, filled(20, 'N'));
    cache.commit();
    byte[] before = CacheFixture.apply(filled(FILE_BLOCKS, 'O'), 10 * BS, filled(20, 'N'));
    return new Setup(root, store, mem, cache, before);
  }

  private static void zero(WriteCache cache, long off, long len, int kind) throws IOException {
    WriteCache.OpenFile h = cache.open("f");
    try {
      if (kind == 0) {
        cache.punchHole(h, off, len);
      } else {
        cache.zeroRange(h, off, len, true);
      }
    } finally {
      cache.close(h);
    }
  }

  /** Each byte as before the call or zero, block by block (a block is never torn). */
  private static void checkBlocks(byte[] got, byte[] before, byte[] after, String where) {
    assertEquals(before.length, got.length, where + ": size");
    for (int b = 0; b * BS < got.length; b++) {
      int from = b * BS;
      int to = Math.min(got.length, from + BS);
      if (!Arrays.equals(got, from, to, before, from, to)
          && !Arrays.equals(got, from, to, after, from, to)) {
        fail(where + ": block " + b + " reads '" + (char) got[from] + "...', neither as before"
            + " the call nor as after it (old backing bytes the cache had covered?)");
      }
    }
  }

  @Test
  @DisplayName("a short punch (zero blocks in the cache) survives a crash after its commit,"
      + " though the backing file still holds the old bytes")
  void shortPunchCommittedThenCrash() throws Exception {
    for (int kind = 0; kind < 2; kind++) {
      Setup s = setUp("short" + kind);
      long off = 8 * BS + 100; // partial block 8, whole 9..17, partial 18
      long len = 10 * BS;
      zero(s.cache(), off, len, kind);
      s.cache().commit();
      byte[] after = s.before().clone();
      Arrays.fill(after, (int) off, (int) (off + len), (byte) 0);
      assertArrayEquals(after, CacheFixture.read(s.cache(), "f"));
      CrashingMemory image = s.mem().crash(new Random(kind));
      s.cache().abandon();
      s.store().powerLoss();
      WriteCache again = WriteCache.openManual(image, s.store(), CacheFixture.manualConfig(BS),
          CacheFixture.nextBoot()); // a power failure: another boot
      assertArrayEquals(after, CacheFixture.read(again, "f"), "recovered, kind " + kind);
      again.flush(60_000);
      assertArrayEquals(after, Files.readAllBytes(s.root().resolve("f")), "written back");
      again.close();
    }
  }

  @Test
  @DisplayName("a long punch: the backing file's zeros are durable before the cached blocks"
      + " are dropped; a crash at any point of the call shows each block before or after")
  void longPunchCrashAnywhere() throws Exception {
    int points = 0;
    for (int kind = 0; kind < 2; kind++) {
      for (int crashAt = 0; ; crashAt++) {
        Setup s = setUp("long" + kind + "-" + crashAt);
        long off = 4 * BS; // whole blocks 4..35: 32 blocks, more than a write chunk
        long len = 32 * BS + 200; // and a partial block 36
        byte[] after = s.before().clone();
        Arrays.fill(after, (int) off, (int) (off + len), (byte) 0);
        s.mem().crashAfter(crashAt);
        boolean returned;
        try {
          zero(s.cache(), off, len, kind);
          s.cache().commit();
          returned = true;
        } catch (CrashingMemory.SimulatedCrash | CacheErrorException e) {
          returned = false;
        }
        String where = (kind == 0 ? "punch" : "zero range") + ", crash at memory op " + crashAt;
        CrashingMemory image = s.mem().crash(new Random(crashAt));
        s.cache().abandon();
        s.store().powerLoss(); // and the backing disk loses what it was not told to keep
        WriteCache again = WriteCache.openManual(image, s.store(),
            CacheFixture.manualConfig(BS), CacheFixture.nextBoot()); // power failure: new boot
        byte[] got = CacheFixture.read(again, "f");
        if (returned) {
          assertArrayEquals(after, got, where + ": the call and a commit returned");
        } else {
          checkBlocks(got, s.before(), after, where);
        }
        again.flush(60_000);
        assertArrayEquals(got, Files.readAllBytes(s.root().resolve("f")),
            where + ": written back as recovered");
        again.close();
        points++;
        if (returned) {
          List<String> ev = s.store().events;
          assertTrue(ev.indexOf("fsync") > ev.indexOf((kind == 0 ? "punch " : "zero ")
              + 4 * BS + " " + 32 * BS), "the backing zeros made durable: " + ev);
          break;
        }
      }
    }
    assertTrue(points > 10, "crash points: " + points);
  }
}
