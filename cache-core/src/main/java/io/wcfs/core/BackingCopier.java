package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.util.concurrent.ConcurrentLinkedDeque;

/**
 * Writeback's copy of committed slots into a backing file, in contiguous runs gathered with
 * one pwritev each. Knows the layout and the memory, nothing of files or the index: the
 * caller guarantees the slots stay put (committed slots are never overwritten in place, and a
 * slot in writeback is not reused before writeback lets go of it).
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

  BackingCopier(CacheMemory mem, CacheLayout layout, int maxRun) {
    this.mem = mem;
    this.layout = layout;
    this.blockSize = layout.geometry().blockSize();
    this.maxRun = maxRun;
  }

  /**
   * Writes the slots (sorted by block index) to {@code file}: whole blocks, also the one
   * holding the end of file, which the caller then cuts to {@code size}. Not durable until the
   * caller's fsync.
   */
  void copy(BackingStore.BackingFile file, long[] blockIdx, int[] slots, long size,
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

  @Override
  public void close() {
    for (WritebackScratch b; (b = writebackScratch.poll()) != null; ) {
      b.close();
    }
  }
}
