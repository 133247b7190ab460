package io.wcfs.fs;

import io.wcfs.core.WriteCache;
import io.wcfs.nativ.NativeIOException;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import ru.serce.jnrfuse.ErrorCodes;

/**
 * The files open through the mount, by the handle our open returned (the kernel's fh) and by
 * the FUSE node they are open on: a file unlinked while open has no path left, and the kernel
 * names it by its node (fstat) or its handle (everything else).
 */
final class OpenFiles {
  /** One open file: the engine's handle and whether writes must commit before returning. */
  static final class Handle {
    final WriteCache.OpenFile file;
    /**
     * The FUSE node it is open on. A CREATE's request names the directory: the reply tells
     * the file's node ({@link #opened}, called from FuseWorker.onCreate).
     */
    volatile long node;
    final boolean sync;
    /**
     * Whether the file may have set-user-ID or set-group-ID bits that a write by another user
     * must clear. Known at open and set again by a chmod that adds such bits, so that writes
     * to the common file without them cost no stat; see {@link PermissionRules#clearSetIdBits}.
     */
    volatile boolean mayHaveSetId;

    Handle(WriteCache.OpenFile file, long node, boolean sync, boolean mayHaveSetId) {
      this.file = file;
      this.node = node;
      this.sync = sync;
      this.mayHaveSetId = mayHaveSetId;
    }
  }

  private final Map<Long, Handle> handles = new ConcurrentHashMap<>();
  private final AtomicLong nextHandle = new AtomicLong(1);

  /** Registers an open file; returns the handle the kernel will name it by. */
  long add(WriteCache.OpenFile file, long node, boolean sync, boolean mayHaveSetId) {
    long id = nextHandle.getAndIncrement();
    handles.put(id, new Handle(file, node, sync, mayHaveSetId));
    return id;
  }

  /** The open file of handle {@code fh}, or null. */
  Handle get(long fh) {
    return handles.get(fh);
  }

  /** The open file of handle {@code fh}; EBADF if there is none. */
  Handle require(long fh) throws NativeIOException {
    Handle h = handles.get(fh);
    if (h == null) {
      throw new NativeIOException("stale file handle", ErrorCodes.EBADF());
    }
    return h;
  }

  Handle remove(long fh) {
    return handles.remove(fh);
  }

  /** A CREATE's reply: the node the new handle is open on. */
  void opened(long fh, long node) {
    Handle h = handles.get(fh);
    if (h != null) {
      h.node = node;
    }
  }

  /** An open file on FUSE node {@code node}, or null. */
  Handle onNode(long node) {
    for (Handle h : handles.values()) {
      if (h.node == node) {
        return h;
      }
    }
    return null;
  }

  /** Set-ID bits were set on inode {@code ino}: its handles (through any name) check again. */
  void mayHaveSetId(long ino) {
    for (Handle h : handles.values()) {
      if (h.file.ino() == ino) {
        h.mayHaveSetId = true;
      }
    }
  }
}
