package io.wcfs.nativ;

import com.kenai.jffi.MemoryIO;

/**
 * A struct iovec array in native memory, for one pwritev(2) of buffers scattered in memory
 * (cache slots in the mapping) to one contiguous range of a file. {@link #add} extends the last
 * entry when the new buffer continues it, so slots allocated in a row cost one entry.
 */
public final class IoVec implements AutoCloseable {
  private static final MemoryIO IO = MemoryIO.getInstance();
  private final NativeBuffer mem;
  private final int capacity;
  private int count;

  public IoVec(int capacity) {
    this.capacity = capacity;
    this.mem = new NativeBuffer(16L * capacity);
  }

  public void clear() {
    count = 0;
  }

  public void add(long address, long length) {
    if (count > 0 && base(count - 1) + length(count - 1) == address) {
      IO.putLong(mem.address() + 16L * (count - 1) + 8, length(count - 1) + length);
      return;
    }
    if (count == capacity) {
      throw new IllegalStateException("iovec array full (" + capacity + " entries)");
    }
    IO.putLong(mem.address() + 16L * count, address);
    IO.putLong(mem.address() + 16L * count + 8, length);
    count++;
  }

  public int count() {
    return count;
  }

  public long address() {
    return mem.address();
  }

  public long base(int i) {
    return IO.getLong(mem.address() + 16L * i);
  }

  public long length(int i) {
    return IO.getLong(mem.address() + 16L * i + 8);
  }

  /** Whether every address and length is a multiple of {@code alignment}, as O_DIRECT needs. */
  public boolean aligned(long alignment) {
    long bits = 0;
    for (int i = 0; i < count; i++) {
      bits |= base(i) | length(i);
    }
    return (bits & (alignment - 1)) == 0;
  }

  @Override
  public void close() {
    mem.close();
  }
}
