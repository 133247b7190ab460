package io.wcfs.nativ;

import com.kenai.jffi.MemoryIO;
import java.lang.ref.Cleaner;

/**
 * A block of native memory (scratch space for I/O, tests); freed by {@link #close}, or by the
 * garbage collector once unreachable. The latter matters for per-thread scratch buffers of
 * threads that come and go: under fuse_main, jffi attached each libfuse worker as a new
 * java.lang.Thread per upcall, and without a cleaner that leaked ~5 KB per FUSE request.
 */
public final class NativeBuffer implements AutoCloseable {
  private static final MemoryIO IO = MemoryIO.getInstance();
  private static final Cleaner CLEANER = Cleaner.create();
  private final long address;
  private final long size;
  private final Cleaner.Cleanable cleanable;

  public NativeBuffer(long size) {
    this(size, 1);
  }

  /** A buffer whose address is a multiple of {@code alignment} (a power of two), for O_DIRECT. */
  public NativeBuffer(long size, int alignment) {
    this.size = size;
    long addr = IO.allocateMemory(Math.max(1, size) + alignment - 1, true);
    if (addr == 0) {
      throw new OutOfMemoryError("native allocation of " + size + " bytes failed");
    }
    this.address = (addr + alignment - 1) & -(long) alignment;
    this.cleanable = CLEANER.register(this, () -> IO.freeMemory(addr));
  }

  public long address() {
    return address;
  }

  public long size() {
    return size;
  }

  /** The buffer as a direct ByteBuffer (valid while this buffer is; for checksums). */
  public java.nio.ByteBuffer asByteBuffer() {
    return IO.newDirectByteBuffer(address, (int) Math.min(size, Integer.MAX_VALUE));
  }

  public void put(long offset, byte[] src, int srcOffset, int length) {
    check(offset, length);
    IO.putByteArray(address + offset, src, srcOffset, length);
  }

  public void get(long offset, byte[] dst, int dstOffset, int length) {
    check(offset, length);
    IO.getByteArray(address + offset, dst, dstOffset, length);
  }

  public void putLong(long offset, long value) {
    check(offset, 8);
    IO.putLong(address + offset, value);
  }

  public long getLong(long offset) {
    check(offset, 8);
    return IO.getLong(address + offset);
  }

  /**
   * Past the end is a bug, and unchecked it corrupted the C heap (a path longer than the
   * staging buffer of a file version aborted the daemon in malloc): an exception instead.
   */
  private void check(long offset, long length) {
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new IndexOutOfBoundsException("native buffer of " + size + " bytes: " + length
          + " bytes at offset " + offset);
    }
  }

  public static void zero(long address, long length) {
    IO.setMemory(address, length, (byte) 0);
  }

  public static void putBytes(long address, byte[] src, int srcOffset, int length) {
    IO.putByteArray(address, src, srcOffset, length);
  }

  public static void getBytes(long address, byte[] dst, int dstOffset, int length) {
    IO.getByteArray(address, dst, dstOffset, length);
  }

  @Override
  public void close() {
    cleanable.clean(); // frees once, however often called
  }
}
