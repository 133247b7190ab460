package io.wcfs.core;

import com.kenai.jffi.MemoryIO;
import io.wcfs.nativ.NativeBuffer;
import jnr.ffi.LibraryLoader;

/**
 * Lets a test running as root see files as a daemon that is not root does: Linux capabilities
 * belong to a thread, so clearing CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the calling
 * thread's effective set makes mode bits apply to it, and to the threads it starts meanwhile
 * (a new thread copies its creator's credentials), while the rest of the JVM keeps them. The
 * permitted set is kept, so {@link #close} can raise them again on this thread.
 */
final class ThreadCapabilities implements AutoCloseable {
  private static final int VERSION_3 = 0x20080522;
  private static final int DAC_BITS = 1 << 1 | 1 << 2; // CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH

  /** Public only for jnr-ffi's generated implementation. */
  public interface Api {
    int capget(long header, long data);

    int capset(long header, long data);
  }

  private static final Api API = LibraryLoader.create(Api.class).load("c");
  private static final MemoryIO IO = MemoryIO.getInstance();
  private final int savedEffective;

  private ThreadCapabilities(int savedEffective) {
    this.savedEffective = savedEffective;
  }

  /** Drops the two capabilities from this thread; null if it cannot (not root, no capget). */
  static ThreadCapabilities withoutDacOverride() {
    try (NativeBuffer header = new NativeBuffer(8); NativeBuffer data = new NativeBuffer(24)) {
      IO.putInt(header.address(), VERSION_3);
      IO.putInt(header.address() + 4, 0); // pid 0: the calling thread
      if (API.capget(header.address(), data.address()) != 0
          || (IO.getInt(data.address()) & DAC_BITS) != DAC_BITS) {
        return null;
      }
      int effective = IO.getInt(data.address());
      IO.putInt(data.address(), effective & ~DAC_BITS);
      if (API.capset(header.address(), data.address()) != 0) {
        return null;
      }
      return new ThreadCapabilities(effective);
    }
  }

  @Override
  public void close() {
    try (NativeBuffer header = new NativeBuffer(8); NativeBuffer data = new NativeBuffer(24)) {
      IO.putInt(header.address(), VERSION_3);
      IO.putInt(header.address() + 4, 0);
      if (API.capget(header.address(), data.address()) != 0) {
        throw new IllegalStateException("capget failed");
      }
      IO.putInt(data.address(), savedEffective);
      if (API.capset(header.address(), data.address()) != 0) {
        throw new IllegalStateException("capset failed: this thread stays without DAC override");
      }
    }
  }
}
