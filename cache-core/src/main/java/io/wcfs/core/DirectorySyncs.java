package io.wcfs.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * The backing directories whose entries changed since the last commit, and their fsyncs before
 * the next commit point ({@link Epochs} calls {@link #sync} with epochLock held exclusively),
 * in an order that keeps a crash between two directories' fsyncs from losing a renamed name.
 * Its fields are guarded by its own monitor, under which it takes no other lock.
 */
final class DirectorySyncs {
  private final BackingStore backing;
  /**
   * Backing directories whose entries changed (create, rename, unlink, ...) since the last
   * commit. The next commit fsyncs them before its commit point, so that a committed file slot
   * never names a path the backing disk could still lose, and an unlinked or replaced file's
   * blocks are freed only once its name is durably gone; in {@link #fsyncOrder}. Guarded by
   * this, as dirtyRenames.
   */
  private Set<String> dirtyDirectories = new LinkedHashSet<>();
  /** Renames across directories since the last commit: (target's, source's directory). */
  private List<String[]> dirtyRenames = new ArrayList<>();

  DirectorySyncs(BackingStore backing) {
    this.backing = backing;
  }

  synchronized boolean dirty() {
    return !dirtyDirectories.isEmpty();
  }

  /**
   * Records that the entries of {@code path}'s parent directory changed, gaining that name or
   * otherwise (the engine after a create, mkdir, mknod, symlink, link or rmdir it made in the
   * backing directory): the next commit makes them durable.
   */
  void changed(String path) {
    synchronized (this) {
      dirtyDirectories.add(BackingStore.parentOf(path));
    }
  }

  /**
   * Records a rename made in the backing directory: the next commit makes both directories'
   * entries durable, the target's first.
   */
  void renamed(String from, String to) {
    synchronized (this) {
      dirtyDirectories.add(BackingStore.parentOf(from));
      dirtyDirectories.add(BackingStore.parentOf(to));
      if (!BackingStore.parentOf(from).equals(BackingStore.parentOf(to))) {
        dirtyRenames.add(new String[] {BackingStore.parentOf(to), BackingStore.parentOf(from)});
      }
    }
  }

  /**
   * The order to fsync {@code dirs} in: for each rename across two of them ({@code renames}:
   * the directory that gained the name, the one that lost it), the first before the second.
   * Where each directory's part of a rename is durable with its own fsync (POSIX; ext4 and xfs
   * commit the whole rename with either), a crash between the two then leaves the file under
   * both names, which re-applying a journaled rename finishes, never under neither. Otherwise
   * the order of {@code dirs}; directories that renames cross both ways (a cycle) have no
   * such order: they come last, in that order.
   */
  static List<String> fsyncOrder(Set<String> dirs, List<String[]> renames) {
    if (renames.isEmpty()) {
      return new ArrayList<>(dirs);
    }
    java.util.Map<String, Integer> waitsFor = new java.util.HashMap<>();
    for (String[] r : renames) {
      if (dirs.contains(r[0]) && dirs.contains(r[1]) && !r[0].equals(r[1])) {
        waitsFor.merge(r[1], 1, Integer::sum);
      }
    }
    List<String> order = new ArrayList<>(dirs.size());
    Set<String> left = new LinkedHashSet<>(dirs);
    while (!left.isEmpty()) {
      String next = null;
      for (String d : left) {
        if (waitsFor.getOrDefault(d, 0) == 0) {
          next = d;
          break;
        }
      }
      if (next == null) {
        next = left.iterator().next(); // a cycle: no order keeps every rename
      }
      left.remove(next);
      order.add(next);
      for (String[] r : renames) {
        if (r[0].equals(next) && left.contains(r[1]) && !r[0].equals(r[1])) {
          waitsFor.merge(r[1], -1, Integer::sum);
        }
      }
    }
    return order;
  }


  /**
   * fsyncs the directories changed since the last commit. Called with epochLock held
   * exclusively, so no write can store a slot naming a path whose directory entry is newer
   * than the set taken here. A failure puts them back and fails the commit, latching nothing:
   * it is the backing disk's error, not the cache's.
   */
  void sync() throws IOException {
    Set<String> dirs;
    List<String[]> renames;
    synchronized (this) {
      if (dirtyDirectories.isEmpty()) {
        return;
      }
      dirs = dirtyDirectories;
      renames = dirtyRenames;
      dirtyDirectories = new LinkedHashSet<>();
      dirtyRenames = new ArrayList<>();
    }
    try {
      for (String d : fsyncOrder(dirs, renames)) { // a rename's target before its source
        if (backing.stat(d) != null) { // removed since: its parent's fsync covers that
          backing.syncDirectory(d);
        }
      }
    } catch (IOException e) {
      synchronized (this) {
        dirtyDirectories.addAll(dirs);
        dirtyRenames.addAll(renames);
      }
      throw new IOException("fsync of a backing directory failed: " + e.getMessage(), e);
    }
  }
}
