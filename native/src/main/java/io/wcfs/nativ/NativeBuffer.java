package io.wcfs.nativ;

import com.kenai.jffi.MemoryIO;

/** A block of native memory (scratch space for I/O, tests); freed by {@link #close}. */
public final class NativeBuffer implements AutoCloseable {
  private static final MemoryIO IO = MemoryIO.getInstance();
  private final long address;
  private final long size;
  private boolean freed;

  public NativeBuffer(long size) {
    this.size = size;
    this.address = IO.allocateMemory(Math.max(1, size), true);
    if (address == 0) {
      throw new OutOfMemoryError("native allocation of " + size + " bytes failed");
    }
  }

  public long address() {
    return address;
  }

  public long size() {
    return size;
  }

  public void put(long offset, byte[] src, int srcOffset, int length) {
    IO.putByteArray(address + offset, src, srcOffset, length);
  }

  public void get(long offset, byte[] dst, int dstOffset, int length) {
    IO.getByteArray(address + offset, dst, dstOffset, length);
  }

  public void putLong(long offset, long value) {
    IO.putLong(address + offset, value);
  }

  public static void zero(long address, long length) {
    IO.setMemory(address, length, (byte) 0);
  }

  public static void copy(long from, long to, long length) {
    IO.copyMemory(from, to, length);
  }

  public static void putBytes(long address, byte[] src, int srcOffset, int length) {
    IO.putByteArray(address, src, srcOffset, length);
  }

  public static void getBytes(long address, byte[] dst, int dstOffset, int length) {
    IO.getByteArray(address, dst, dstOffset, length);
  }

  @Override
  public void close() {
    if (!freed) {
      freed = true;
      IO.freeMemory(address);
    }
  }
}
