package io.wcfs.core;

import java.io.IOException;

/**
 * The persistent memory the engine writes its cache into: DESIGN.md's three-step API. To make
 * data durable, {@link #copyIn} or {@link #assign}, then {@link #flush} the range, then {@link
 * #commit}; nothing is durable before the commit that follows its flush. Only aligned 8-byte
 * {@link #assign} stores are atomic.
 *
 * <p>Implementations: {@link PmemCacheMemory} over a mapped cache file, and a crash-simulating
 * memory in the tests. Transfers use native addresses so FUSE buffers need no Java heap copy.
 */
public interface CacheMemory extends AutoCloseable {
  long size();

  /** pmem_memcpy from native memory at {@code srcAddress}. */
  void copyIn(long offset, long srcAddress, long length) throws IOException;

  /** pmem_assign: an aligned 8-byte store, atomic when persisted. */
  void assign(long offset, long value) throws IOException;

  /**
   * Two pmem_assigns to adjacent words, {@code first} then {@code second}: a process killed
   * between them may leave the first alone, never the second alone. A memory whose stores are
   * system calls does both in one.
   */
  default void assign2(long offset, long first, long second) throws IOException {
    assign(offset, first);
    assign(offset + 8, second);
  }

  /** pmem_flush of a range. */
  void flush(long offset, long length) throws IOException;

  /** pmem_commit: everything flushed so far is durable when this returns. */
  void commit() throws IOException;

  /**
   * Starts moving what was flushed so far towards the device without waiting for it, so that
   * it travels while an earlier commit waits for its device flush. Makes nothing durable: the
   * next {@link #commit} still waits for it. A no-op where flush already did that (pmem).
   */
  default void startCommit() throws IOException {}

  /**
   * Called by a commit about to wait for another one's device flush: the daemon hands its
   * request loop to another thread there (see PmemCacheMemory#beforeDeviceWait).
   */
  default void beforeWait() {}

  /**
   * Device flushes issued so far (for status and benchmarks): each wait for the device's
   * writeback plus a flush of its write cache, e.g. the fdatasync of a cache file in the page
   * cache. Persistent memory's commit is a CPU fence and issues none.
   */
  default long deviceFlushes() {
    return 0;
  }

  /**
   * Whether each {@link #commit} costs a device flush (a cache file in the page cache), so
   * that an epoch is better committed once with a checksummed commit record than twice; on
   * persistent memory a commit is a fence and checksums would cost more than they save.
   */
  default boolean commitFlushesDevice() {
    return false;
  }

  long readLong(long offset) throws IOException;

  /**
   * The native address of offset 0 if the kernel may read this memory directly (writeback
   * hands slot addresses to pwritev), else 0 and writeback copies out first.
   */
  default long address() {
    return 0;
  }

  /** Copies cache bytes into native memory at {@code dstAddress}. */
  void copyOut(long offset, long dstAddress, long length) throws IOException;

  /** Copies cache bytes into native memory at {@code dstAddress} within this memory. */
  default void copyWithin(long fromOffset, long toOffset, long length, long scratchAddress)
      throws IOException {
    copyOut(fromOffset, scratchAddress, length);
    copyIn(toOffset, scratchAddress, length);
  }

  /** One line for status: backend, strategy, whether durability is real. */
  String describe();

  @Override
  void close() throws IOException;
}
