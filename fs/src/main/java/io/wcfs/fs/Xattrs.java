package io.wcfs.fs;

import io.wcfs.core.BackingStore;
import io.wcfs.nativ.LibC;
import io.wcfs.nativ.Xattr;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Extended attributes passed to the backing node, and the file capability that writes,
 * truncates and chowns must remove.
 *
 * <p>Every call goes to the {@link BackingStore} ({@link BackingStore#getXattr} and the rest),
 * which reaches the node itself (a symlink gets its own attributes; paths near PATH_MAX below
 * the root work). Paths are relative to the backing root ("" is the root). Errors are the
 * backing filesystem's errno, unchanged.
 *
 * <p><b>Ordering.</b> Attribute changes go to the backing node at once, like chmod. They are
 * made durable before the next commit a caller waits for ({@link #syncPending}: fsync,
 * fdatasync, O_SYNC writes): a changed regular file or directory is held open ({@link
 * BackingStore#holdToSync}) and fsync'd then; for other nodes (symlinks, devices) the parent
 * directory is fsync'd by the next commit, like a new name. So an xattr set before an
 * acknowledged fsync survives a crash with the data that fsync covered.
 *
 * <p><b>security.capability.</b> With xattrs answered the kernel asks for it before a write
 * (once per inode with kill-priv v2, until the inode's attributes are refreshed; see
 * FuseLoop). Nearly every file has none, so the answer "none" is remembered per FUSE node id
 * and given from memory: such a probe costs the FUSE round trip only, no backing call. Setting
 * security.capability anywhere forgets every remembered answer (hard links have one node per
 * name); removing it cannot make a remembered "none" wrong. A node id's answer is dropped when
 * the kernel forgets the node, before libfuse can reuse the id. The same memory lets writes
 * skip removing a capability the file does not have.
 */
final class Xattrs {
  private static final Logger LOG = LoggerFactory.getLogger(Xattrs.class);
  static final String CAPABILITY = "security.capability";
  /** Past this many held descriptors, they are fsync'd and closed at once. */
  private static final int MAX_PENDING = 256;
  private static final int ENOSYS = 38;
  /** Remembered "no capability" answers beyond this are forgotten (a bound, not a policy). */
  private static final int MAX_REMEMBERED = 1 << 16;

  private final BackingStore backing;
  private final boolean enabled;
  /** Called with a changed node's path when its parent directory must be fsync'd instead. */
  private final Consumer<String> parentDirty;

  /** Node ids known to have no security.capability, with the epoch they were learnt in. */
  private final Map<Long, Long> noCapability = new ConcurrentHashMap<>();
  private final AtomicLong epoch = new AtomicLong();

  /** Backing nodes changed since the last commit, held open to be fsync'd. */
  private final Map<String, BackingStore.HeldNode> pending = new ConcurrentHashMap<>();

  private final LongAdder capabilityProbes = new LongAdder();
  private final LongAdder capabilityProbesFromMemory = new LongAdder();
  private final LongAdder capabilitiesCleared = new LongAdder();

  /**
   * @param enabled whether the four xattr calls are answered (else ENOSYS, as before wcfs
   *     had them: the kernel then never asks again)
   * @param parentDirty told the path of a changed node that cannot be fsync'd itself
   */
  Xattrs(BackingStore backing, boolean enabled, Consumer<String> parentDirty) {
    this.backing = backing;
    this.enabled = enabled;
    this.parentDirty = parentDirty;
  }

  boolean enabled() {
    return enabled;
  }

  /** getxattr probes for security.capability the kernel sent. */
  long capabilityProbes() {
    return capabilityProbes.sum();
  }

  /** ... of which answered from memory, without a backing call. */
  long capabilityProbesFromMemory() {
    return capabilityProbesFromMemory.sum();
  }

  /** Capabilities removed because their file was written, truncated or chowned. */
  long capabilitiesCleared() {
    return capabilitiesCleared.sum();
  }

  private boolean knownAbsent(long node) {
    Long e = node < 0 ? null : noCapability.get(node);
    return e != null && e == epoch.get();
  }

  private void rememberAbsent(long node, long learntIn) {
    if (node < 0) {
      return;
    }
    if (noCapability.size() >= MAX_REMEMBERED) {
      noCapability.clear();
    }
    noCapability.put(node, learntIn);
    if (epoch.get() != learntIn) { // a capability was set meanwhile: this answer may be stale
      noCapability.remove(node, learntIn);
    }
  }

  /** Whether {@code node} is known to have no file capability (as of the last change). */
  boolean capabilityKnownAbsent(long node) {
    return knownAbsent(node);
  }

  /**
   * The kernel's capability probe of {@code node} answered from memory, as {@link #get} would:
   * true (and counted) if the node is known to have none.
   */
  boolean probeFromMemory(long node) {
    if (!enabled || !knownAbsent(node)) {
      return false;
    }
    capabilityProbes.increment();
    capabilityProbesFromMemory.increment();
    return true;
  }

  /** The kernel forgot a node: its id may name another file later. */
  void forget(long node) {
    noCapability.remove(node);
  }

  // ---- the four FUSE calls; each returns what FUSE expects, or -errno -----------------------

  long get(String path, long node, String name, long buf, long size) {
    if (!enabled) {
      return -ENOSYS; // the kernel remembers it and asks no more
    }
    boolean capability = CAPABILITY.equals(name);
    long learntIn = epoch.get();
    if (capability) {
      capabilityProbes.increment();
      if (knownAbsent(node)) {
        capabilityProbesFromMemory.increment();
        return -Xattr.ENODATA;
      }
    }
    long n = backing.getXattr(path, name, buf, size);
    if (capability && (n == -Xattr.ENODATA || n == -Xattr.ENOTSUP)) {
      rememberAbsent(node, learntIn);
    }
    return n;
  }

  long list(String path, long buf, long size) {
    if (!enabled) {
      return -ENOSYS;
    }
    return backing.listXattrs(path, buf, size);
  }

  int set(String path, String name, long value, long size, int flags) {
    if (!enabled) {
      return -ENOSYS;
    }
    boolean capability = CAPABILITY.equals(name);
    if (capability) {
      epoch.incrementAndGet(); // before the change: no probe may remember "none" across it
    }
    int rc = backing.setXattr(path, name, value, size, flags);
    if (rc == 0) {
      changed(path);
    }
    return rc;
  }

  int remove(String path, String name) {
    if (!enabled) {
      return -ENOSYS;
    }
    int rc = backing.removeXattr(path, name);
    if (rc == 0) {
      changed(path);
    }
    return rc;
  }

  /**
   * Removes the file capability of the node at {@code path} (FUSE node {@code node}, -1 if
   * unknown), as the kernel does on a write, truncate or chown of a local file. Free for a node
   * known to have none. Done whether or not xattrs are answered: the capability would still
   * grant privileges to whoever runs the changed file from the backing directory.
   */
  void dropCapability(String path, long node) throws IOException {
    if (knownAbsent(node)) {
      return;
    }
    long learntIn = epoch.get();
    int rc = backing.removeXattr(path, CAPABILITY);
    if (rc == 0) {
      capabilitiesCleared.increment();
      LOG.info("removed the file capability of {} (changed through the mount)", path);
      changed(path);
      rememberAbsent(node, learntIn);
    } else if (rc == -Xattr.ENODATA || rc == -Xattr.ENOTSUP || rc == -2) {
      // ENOENT: unlinked while open, or created in the cache and not in the backing directory
      // yet (it will be created there without attributes): nothing to remove either way.
      rememberAbsent(node, learntIn);
    } else {
      LibC.check(rc, "removing security.capability of " + path);
    }
  }

  /** A backing node's attributes changed: make it durable by the next commit. */
  private void changed(String path) {
    if (pending.containsKey(path)) {
      return;
    }
    BackingStore.HeldNode node;
    try {
      node = backing.holdToSync(path);
    } catch (IOException e) {
      return; // ENOENT: gone already; its directory's change is synced with it
    }
    if (node == null) {
      parentDirty.accept(path); // a symlink or a special file: its directory's fsync
      return;
    }
    BackingStore.HeldNode old = pending.putIfAbsent(path, node);
    if (old != null) {
      closeQuietly(node);
    }
    if (pending.size() > MAX_PENDING) {
      try {
        syncPending();
      } catch (IOException e) {
        LOG.warn("fsync of backing files with changed attributes failed: {}", e.toString());
      }
    }
  }

  /** fsyncs every backing node whose attributes changed since the last call. */
  void syncPending() throws IOException {
    if (pending.isEmpty()) {
      return;
    }
    List<Map.Entry<String, BackingStore.HeldNode>> taken = new ArrayList<>();
    for (String path : List.copyOf(pending.keySet())) {
      BackingStore.HeldNode node = pending.remove(path);
      if (node != null) {
        taken.add(Map.entry(path, node));
      }
    }
    IOException failure = null;
    for (Map.Entry<String, BackingStore.HeldNode> e : taken) {
      try {
        e.getValue().sync();
      } catch (IOException ex) {
        failure = failure == null ? new IOException("fsync of " + e.getKey()
            + " after an attribute change: " + ex.getMessage(), ex) : failure;
      } finally {
        closeQuietly(e.getValue());
      }
    }
    if (failure != null) {
      throw failure;
    }
  }

  private static void closeQuietly(BackingStore.HeldNode node) {
    try {
      node.close();
    } catch (IOException e) {
      // nothing to do: the descriptor is gone either way
    }
  }
}
