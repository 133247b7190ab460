package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.Arrays;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.function.BooleanSupplier;

/**
 * Writeback's copy of committed blocks into a backing file, up to durable: of one file's
 * share of a batch ({@link #copyGroup}) or of one file whole ({@link #copyToBacking}), the
 * blocks in contiguous runs gathered with one pwritev each, then the blocks a punch stored as
 * zeros deallocated, the size cut, the mtime set and the file fsync'd, all under the file's
 * io lock. Writeback frees the slots afterwards. A file deleted or replaced in the backing
 * directory behind wcfs's back is {@link LostAndFound}'s. The run copy relies on the slots
 * staying put: committed slots are never overwritten in place, and a slot in writeback is not
 * reused before writeback lets go of it.
 */
final class BackingCopier implements AutoCloseable {
  /** A contiguous writeback run this long goes to the backing file with O_DIRECT. */
  private static final long SEQUENTIAL_CUTOFF = 1 << 20;

  /** One writeback copy's scratch; {@code copy} is null when the memory has an address. */
  private record WritebackScratch(IoVec iov, NativeBuffer copy) implements AutoCloseable {
    @Override
    public void close() {
      iov.close();
      if (copy != null) {
        copy.close();
      }
    }
  }

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final FileRegistry files;
  private final LostAndFound lostAndFound;
  /** Whether a flush, unmount or close waits for the cache to drain; asked per copy. */
  private final BooleanSupplier drainRequested;
  private final int blockSize;
  /** Blocks per run, at most: writeback_jobs. */
  private final int maxRun;
  /**
   * Writeback's iovec arrays and, for a memory the kernel cannot read directly, copy buffers
   * (writeback_jobs blocks each), kept for reuse: a fresh 4 MiB buffer per batch cost page
   * faults on every block, and made draining slower than the disk.
   */
  private final ConcurrentLinkedDeque<WritebackScratch> writebackScratch =
      new ConcurrentLinkedDeque<>();
  /** One block per thread: isZeroSlot's look at a slot a punch stored. */
  private final ThreadLocal<NativeBuffer> punchScratch;

  BackingCopier(CacheMemory mem, CacheLayout layout, FileRegistry files,
      LostAndFound lostAndFound, int maxRun, BooleanSupplier drainRequested) {
    this.mem = mem;
    this.layout = layout;
    this.files = files;
    this.lostAndFound = lostAndFound;
    this.drainRequested = drainRequested;
    this.blockSize = layout.geometry().blockSize();
    this.maxRun = maxRun;
    this.punchScratch = ThreadLocal.withInitial(() -> new NativeBuffer(blockSize));
  }

  /** The blocks of a file {@link #copyGroup} made durable in its backing file. */
  record Written(long[] blockIdx, int[] slots) {}

  /**
   * One file's share of a batch: copy under the file's read lock (a truncate cannot slip
   * between our size check and the write), fsync without it. Returns what is durable now,
   * for Writeback to free under the file's write lock, or null: nothing to free (nothing left
   * to write, or the file just moved to lost+found).
   */
  Written copyGroup(CachedFile f, int[] batchSlots) throws IOException {
    // A copy: the batch's own array must keep every slot it took, each once, for its
    // endWriteback (compacting it in place leaked a slot whose block was overwritten meanwhile).
    int[] slots = batchSlots.clone();
    long[] blockIdx = new long[slots.length];
    for (int i = 0; i < slots.length; i++) {
      blockIdx[i] = CacheLayout.locationBlock(layout.entryLocation(slots[i]));
    }
    sortByBlock(blockIdx, slots);
    long size;
    long mtime;
    f.lock.readLock().lock();
    try {
      // Blocks replaced or dropped since the batch was taken are not written.
      int n = 0;
      for (int i = 0; i < slots.length; i++) {
        if (f.blocks.get(blockIdx[i]) == slots[i]) {
          blockIdx[n] = blockIdx[i];
          slots[n++] = slots[i];
        }
      }
      blockIdx = Arrays.copyOf(blockIdx, n);
      slots = Arrays.copyOf(slots, n);
      if (n == 0 || f.path == null || f.dead) {
        return null; // a dead file's blocks never reach the backing directory
      }
      size = f.size;
      mtime = f.mtimeNanos;
      // io before lock is released: a truncate, write-through or writeBackFile that follows
      // this snapshot waits for our copy instead of racing it with newer bytes.
      f.io.lock();
    } finally {
      f.lock.readLock().unlock();
    }
    boolean vanished = false;
    try {
      copyToBacking(f, blockIdx, slots, size, mtime);
    } catch (java.nio.file.NoSuchFileException e) {
      vanished = true;
    } catch (IOException e) {
      if (f.dead) {
        return null; // unlinked since the snapshot, never opened: nothing to write or free
      }
      throw e;
    } finally {
      f.io.unlock();
    }
    if (vanished) {
      // Deleted behind wcfs's back before wcfs had it open (an open file is written through
      // its descriptor whatever its names): keep the blocks, somewhere a person finds them.
      lostAndFound.moveToLostAndFound(f,
          "was deleted in the backing directory behind wcfs's back");
      return null; // the next batch writes them there
    }
    return new Written(blockIdx, slots);
  }

  private static void sortByBlock(long[] blockIdx, int[] slots) {
    Integer[] order = new Integer[slots.length];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    Arrays.sort(order, (a, b) -> Long.compare(blockIdx[a], blockIdx[b]));
    long[] bi = blockIdx.clone();
    int[] sl = slots.clone();
    for (int i = 0; i < order.length; i++) {
      blockIdx[i] = bi[order[i]];
      slots[i] = sl[order[i]];
    }
  }

  /**
   * Writes blocks to the backing file in contiguous runs, then fsyncs it with the file's size
   * and mtime as of when the blocks were taken. Takes f.io.
   */
  void copyToBacking(CachedFile f, long[] blockIdx, int[] slots, long size, long mtime)
      throws IOException {
    f.io.lock();
    try {
      copyLocked(f, blockIdx, slots, size, mtime);
    } finally {
      f.io.unlock();
    }
    lostAndFound.warnIfReplaced(f);
  }

  private void copyLocked(CachedFile f, long[] blockIdx, int[] slots, long size, long mtime)
      throws IOException {
    BackingStore.BackingFile file = files.backingFile(f);
    // A drain (flush, unmount) and any long contiguous run bypass the page cache (as bcache's
    // sequential cutoff does): nobody rereads such data through the backing page cache, the
    // kernel's cache of the mount already holds what was just written, and on a VM whose host
    // reclaims free memory, fresh page-cache pages cost more than the disk. Short runs of
    // background writeback keep it: files in use are reread from there once their blocks
    // leave the cache (random reads: 27k IOPS direct, 43k buffered).
    boolean bypassPageCache = drainRequested.getAsBoolean();
    copy(file, blockIdx, slots, size, bypassPageCache);
    punchZeroedBlocks(f, file, blockIdx, slots, size);
    if (file.size() != size) {
      file.truncate(size);
    }
    file.setMtime(mtime);
    file.sync(); // durable on the backing disk before freeWrittenBack frees any of these slots
  }

  /**
   * Writes the slots (sorted by block index) to {@code file}: whole blocks, also the one
   * holding the end of file, which the caller then cuts to {@code size}. Not durable until the
   * caller's fsync.
   */
  private void copy(BackingStore.BackingFile file, long[] blockIdx, int[] slots, long size,
      boolean bypassPageCache) throws IOException {
    // The kernel reads the slots straight from the mapping (no copy of our own): their data
    // stays put while we write, because a committed slot is never overwritten in place and a
    // slot marked WB is not reused before writeback lets go of it (SlotTable.endWriteback).
    long mapped = mem.address();
    WritebackScratch scratch = writebackScratch.poll();
    if (scratch == null) {
      scratch = new WritebackScratch(new IoVec(maxRun),
          mapped != 0 ? null : new NativeBuffer((long) maxRun * blockSize, 4096));
    }
    try {
      IoVec iov = scratch.iov();
      int i = 0;
      while (i < slots.length) {
        int j = i;
        while (j + 1 < slots.length && j + 1 - i < maxRun && blockIdx[j + 1] == blockIdx[j] + 1) {
          j++;
        }
        long start = blockIdx[i] * blockSize;
        if (start < size) {
          // Whole blocks, also the one holding the end of file: the truncate below cuts it.
          int n = (int) Math.min(j - i + 1, (size - start + blockSize - 1) / blockSize);
          iov.clear();
          for (int k = i, run; k < i + n; k += run) {
            run = 1; // slots allocated in a row make one buffer
            while (k + run < i + n && slots[k + run] == slots[k] + run) {
              run++;
            }
            long from = layout.dataOffset(slots[k]);
            long len = (long) run * blockSize;
            if (mapped != 0) {
              iov.add(mapped + from, len);
            } else {
              long to = scratch.copy().address() + (long) (k - i) * blockSize;
              mem.copyOut(from, to, len);
              iov.add(to, len);
            }
          }
          boolean direct = bypassPageCache || (long) n * blockSize >= SEQUENTIAL_CUTOFF;
          file.writeBlocks(start, iov, direct);
        }
        i = j + 1;
      }
    } finally {
      writebackScratch.push(scratch);
    }
  }

  /**
   * Writeback's part of a punch hole: of the blocks just written, those a punch stored as
   * zeros (and whose slot still holds zeros) are deallocated in the backing file too, run by
   * run, before the fsync that makes the batch durable. Needs f.io.
   */
  private void punchZeroedBlocks(CachedFile f, BackingStore.BackingFile file, long[] blockIdx,
      int[] slots, long size) throws IOException {
    synchronized (f.punched) {
      if (f.punched.size() == 0) {
        return;
      }
    }
    long runStart = -1;
    long runEnd = -1;
    for (int i = 0; i <= slots.length; i++) {
      long b = i < slots.length ? blockIdx[i] : -1;
      boolean hole = false;
      if (i < slots.length) {
        synchronized (f.punched) {
          hole = f.punched.get(b) == slots[i];
          if (hole) {
            f.punched.remove(b);
          }
        }
        hole = hole && (b + 1) * blockSize <= size && isZeroSlot(slots[i]);
      }
      if (hole && runEnd == b) {
        runEnd = b + 1;
        continue;
      }
      if (runStart >= 0) {
        file.zeroRange(runStart * blockSize, (runEnd - runStart) * blockSize, true);
      }
      runStart = hole ? b : -1;
      runEnd = hole ? b + 1 : -1;
    }
  }

  private boolean isZeroSlot(int slot) throws IOException {
    NativeBuffer buf = punchScratch.get();
    mem.copyOut(layout.dataOffset(slot), buf.address(), blockSize);
    byte[] data = new byte[blockSize];
    buf.get(0, data, 0, blockSize);
    for (byte x : data) {
      if (x != 0) {
        return false;
      }
    }
    return true;
  }

  @Override
  public void close() {
    for (WritebackScratch b; (b = writebackScratch.poll()) != null; ) {
      b.close();
    }
  }
}
