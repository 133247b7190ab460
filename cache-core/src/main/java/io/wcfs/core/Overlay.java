package io.wcfs.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The namespace as the mount shows it, over the backing directory: for each name that a
 * journal record changed and writeback has not applied yet, the file it names now, or nothing
 * (a whiteout: removed, while the backing directory may still hold it). Names without an
 * entry are what the backing directory says. An entry goes when the record that set it is
 * applied and durable in the backing directory, unless a newer record set it again. About 100
 * bytes per pending name. Guarded by this object's monitor.
 */
final class Overlay {
  /** A name's state: {@code file} null is a whiteout; {@code order} of the record that set it. */
  record Node(CachedFile file, long order) {}

  private final TreeMap<String, Node> names = new TreeMap<>();
  /**
   * Written under the monitor, read without it: every getattr asks, and nearly always the
   * overlay is empty (a stale true only costs the monitor; a stale false cannot happen for a
   * name whose record was appended before the asking operation began).
   */
  private volatile boolean empty = true;

  Node get(String path) {
    if (empty) {
      return null;
    }
    synchronized (this) {
      return names.get(path);
    }
  }

  synchronized void put(String path, CachedFile file, long order) {
    names.put(path, new Node(file, order));
    empty = false;
    entriesChanged(path);
  }

  synchronized void whiteout(String path, long order) {
    names.put(path, new Node(null, order));
    empty = false;
    entriesChanged(path);
  }

  /** Forgets {@code path}'s entry if no record newer than {@code order} set it. */
  synchronized void retire(String path, long order) {
    Node n = names.get(path);
    if (n != null && n.order() <= order) {
      names.remove(path);
      empty = names.isEmpty();
    }
  }

  /**
   * When a journaled name change last changed the entries of each directory (epoch nanos): a
   * directory's mtime and ctime move when a name in it is created or removed (POSIX), and its
   * backing directory changes only when writeback applies the record, or never (a file
   * created and removed before writeback reached it). An entry goes once the backing
   * directory's own times caught up ({@link #entriesChangedNanos}), or when a utimens sets
   * them. Read without the monitor by every getattr of a directory.
   */
  private final Map<String, Long> changedDirs = new java.util.concurrent.ConcurrentHashMap<>();
  /** More directories than this changed and not caught up: the oldest answers are dropped. */
  private static final int MAX_CHANGED_DIRS = 1 << 16;

  private void entriesChanged(String path) {
    if (changedDirs.size() >= MAX_CHANGED_DIRS) {
      changedDirs.clear(); // a bound, not a rule: those directories show their backing times
    }
    changedDirs.put(BackingStore.parentOf(path), DataPath.now());
  }

  /**
   * When a journaled name change last changed {@code dir}'s entries, if later than {@code
   * backingMtimeNanos} (the backing directory's); else 0, and the entry goes.
   */
  long entriesChangedNanos(String dir, long backingMtimeNanos) {
    if (changedDirs.isEmpty()) {
      return 0;
    }
    Long t = changedDirs.get(dir);
    if (t == null) {
      return 0;
    }
    if (t <= backingMtimeNanos) {
      changedDirs.remove(dir, t);
      return 0;
    }
    return t;
  }

  /** A utimens set {@code dir}'s times: they are what it shows from now on. */
  void timesSet(String dir) {
    changedDirs.remove(dir);
  }

  /** Entries directly in {@code dir} ("" is the root): name -> node. */
  synchronized List<Map.Entry<String, Node>> children(String dir) {
    List<Map.Entry<String, Node>> out = new ArrayList<>();
    String prefix = dir.isEmpty() ? "" : dir + "/";
    for (Map.Entry<String, Node> e : names.tailMap(prefix, true).entrySet()) {
      String p = e.getKey();
      if (!p.startsWith(prefix)) {
        break;
      }
      if (p.indexOf('/', prefix.length()) < 0) {
        out.add(Map.entry(p.substring(prefix.length()), e.getValue()));
      }
    }
    return out;
  }

  /** Whether {@code path} or any name below it has an entry. */
  synchronized boolean touches(String path) {
    if (names.isEmpty()) {
      return false;
    }
    if (names.containsKey(path)) {
      return true;
    }
    String prefix = path.isEmpty() ? "" : path + "/";
    String next = names.ceilingKey(prefix);
    return next != null && next.startsWith(prefix);
  }

  synchronized boolean isEmpty() {
    return names.isEmpty();
  }

  synchronized int size() {
    return names.size();
  }
}
