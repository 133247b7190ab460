package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Files unlinked while open that leave a cache they fill (see {@link #spill}): chosen and run
 * by {@link Writeback}, whose thread is the one that finds writers waiting for room it cannot
 * make. Holds no state of its own; the file's fields it changes are guarded as {@link
 * CachedFile} says.
 */
final class Spill {
  /** Writeback's logger: these lines are writeback's, and log filters name it. */
  private static final Logger LOG = LoggerFactory.getLogger(Writeback.class);
  /** Where spilled files get their unnamed backing inode: wcfs's own, hidden from the mount. */
  static final String DIR = ".wcfs/orphans";

  /** Frees a file slot whose file has nothing left in the cache (Writeback's freeWrittenBack). */
  @FunctionalInterface
  interface SlotRelease {
    void release(CachedFile f) throws IOException;
  }

  private final CacheMemory mem;
  private final CacheLayout layout;
  private final BackingStore backing;
  private final SlotTable table;
  private final Epochs epochs;
  private final Counters.Writeback counters;
  private final SlotRelease releaseSlot;

  Spill(CacheMemory mem, CacheLayout layout, BackingStore backing, SlotTable table,
      Epochs epochs, Counters.Writeback counters, SlotRelease releaseSlot) {
    this.mem = mem;
    this.layout = layout;
    this.backing = backing;
    this.table = table;
    this.epochs = epochs;
    this.counters = counters;
    this.releaseSlot = releaseSlot;
  }

  /**
   * A file unlinked while open (a database's temporary file, a download being written) keeps
   * its blocks in the cache until its last close: they never go to the backing directory.
   * One that grows until writers wait for room would make them wait forever, itself
   * included, as nothing else frees its blocks. Spilling it copies the whole file, cached
   * blocks and the rest of its backing inode, to a new file in {@link #DIR} that is
   * unlinked at once (with the file's mode and owner, which fstat of its handles shows), frees
   * its blocks and file slot, and sends its later reads and writes there, as for a file whose
   * path is too long for the cache. Its own backing inode is never written: an UNLINK that
   * names it may still be pending, and its name must not show the spilled bytes meanwhile.
   * Its death is committed first; as recovery drops a dead file whatever it held, nothing here
   * needs to be durable, and the spilled inode takes no fsync.
   */
  void spill(CachedFile f) throws IOException {
    backing.checkMayWriteBack(); // the spill file is written in the backing directory
    epochs.commit(); // the death that makes its blocks droppable, durable before the drop
    f.lock.writeLock().lock();
    try {
      synchronized (table) {
        if (!FileRegistry.spillable(f) || f.deathEpoch >= epochs.committedSeq()) {
          return; // closed, truncated, or a backing fsync owed: nothing to do now
        }
      }
      BackingStore.BackingFile old = f.absent ? null : f.file;
      int mode = f.mode;
      int uid = f.uid;
      int gid = f.gid;
      if (old != null) {
        try (io.wcfs.nativ.NativeBuffer st = new io.wcfs.nativ.NativeBuffer(
            io.wcfs.nativ.LibC.STAT_SIZE)) {
          if (old.statInto(st.address()) == 0) {
            io.wcfs.nativ.LibC.FileStatus s = io.wcfs.nativ.LibC.decodeStat(st.address());
            mode = s.mode();
            uid = s.uid();
            gid = s.gid();
          }
        }
      }
      BackingStore.BackingFile target = backing.createUnnamed(DIR, mode, uid, gid);
      long[] keys = f.blocks.keysSorted();
      try {
        copyForSpill(f, old, target);
      } catch (IOException | RuntimeException e) {
        target.close();
        throw e;
      }
      f.io.lock(); // no backing I/O of the file's runs across the switch
      try {
        synchronized (f) { // as FileRegistry.backingFile reads it
          f.file = target;
        }
        if (old != null) {
          old.close();
        }
      } finally {
        f.io.unlock();
      }
      f.absent = false; // reads of what is not cached go to target now
      f.writeThrough = true;
      epochs.storing().lock();
      try {
        synchronized (table) {
          for (long b : keys) {
            epochs.supersede(f.blocks.remove(b));
          }
        }
      } finally {
        epochs.storing().unlock();
      }
      epochs.commit(); // the drops durable while we hold the file: nothing can see it half done
      releaseSlot.release(f); // and its file slot goes
      LOG.info("{} cached blocks of a file unlinked while open ({}) moved to the backing"
          + " filesystem to make room; its reads and writes go there until it is closed",
          keys.length, f.path == null ? "created in the cache" : f.path);
      counters.spilled.increment();
    } finally {
      f.lock.writeLock().unlock();
    }
  }

  /** Needs f.lock: writes f's content, cached blocks over its backing inode, to target. */
  private void copyForSpill(CachedFile f, BackingStore.BackingFile old,
      BackingStore.BackingFile target) throws IOException {
    int blockSize = layout.geometry().blockSize();
    try (io.wcfs.nativ.NativeBuffer buf = new io.wcfs.nativ.NativeBuffer(blockSize)) {
      for (long pos = 0; pos < f.size; pos += blockSize) {
        long length = Math.min(blockSize, f.size - pos);
        int slot = f.blocks.get(pos / blockSize);
        if (slot >= 0) {
          mem.copyOut(layout.dataOffset(slot), buf.address(), length);
        } else if (old == null) {
          continue; // never written: a hole
        } else {
          long got = old.read(pos, buf.address(), length);
          io.wcfs.nativ.NativeBuffer.zero(buf.address() + got, length - got);
        }
        target.write(pos, buf.address(), length);
      }
    }
    target.truncate(f.size);
  }

  /**
   * At mount: removes what a crash left in {@link #DIR} (a spill file whose unlink was not
   * durable yet, with what was copied into it: no one can have it open now).
   */
  void removeStrays() {
    List<String> names = new ArrayList<>();
    try {
      backing.list(DIR, names::add);
    } catch (IOException e) {
      return; // none was ever made
    }
    for (String name : names) {
      try {
        backing.unlink(DIR + "/" + name);
      } catch (IOException e) {
        LOG.warn("could not remove {}/{} left by an earlier spill: {}", DIR, name,
            e.getMessage());
      }
    }
  }
}
