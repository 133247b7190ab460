package io.wcfs.core;

import java.util.Arrays;

/**
 * Open-addressing map from block index (long, non-negative) to cache slot (int), linear probing
 * with backward-shift deletion. 12 bytes per bucket at a load factor of at most 3/4: the in-memory
 * index costs far less than a HashMap's ~80 bytes per entry. Not thread-safe.
 */
final class LongIntMap {
  private static final long EMPTY = -1;
  private long[] keys;
  private int[] values;
  private int size;
  private int mask;

  LongIntMap() {
    this(8);
  }

  LongIntMap(int capacity) {
    int cap = Integer.highestOneBit(Math.max(8, capacity - 1) * 2);
    keys = new long[cap];
    Arrays.fill(keys, EMPTY);
    values = new int[cap];
    mask = cap - 1;
  }

  int size() {
    return size;
  }

  private static int hash(long key) {
    long h = key * 0x9E3779B97F4A7C15L;
    return (int) (h ^ (h >>> 32));
  }

  /** The slot for {@code key}, or -1. */
  int get(long key) {
    for (int i = hash(key) & mask; ; i = (i + 1) & mask) {
      long k = keys[i];
      if (k == key) {
        return values[i];
      }
      if (k == EMPTY) {
        return -1;
      }
    }
  }

  /** Sets the slot for {@code key}; returns the previous one or -1. */
  int put(long key, int value) {
    for (int i = hash(key) & mask; ; i = (i + 1) & mask) {
      long k = keys[i];
      if (k == key) {
        int old = values[i];
        values[i] = value;
        return old;
      }
      if (k == EMPTY) {
        keys[i] = key;
        values[i] = value;
        if (++size * 4 > keys.length * 3) {
          resize(keys.length * 2);
        }
        return -1;
      }
    }
  }

  /** Removes {@code key}; returns its slot or -1. */
  int remove(long key) {
    int i = hash(key) & mask;
    for (; ; i = (i + 1) & mask) {
      long k = keys[i];
      if (k == EMPTY) {
        return -1;
      }
      if (k == key) {
        break;
      }
    }
    int old = values[i];
    // Backward shift: move later members of the probe run into the hole.
    int hole = i;
    for (int j = (i + 1) & mask; keys[j] != EMPTY; j = (j + 1) & mask) {
      int home = hash(keys[j]) & mask;
      boolean between = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (between) {
        keys[hole] = keys[j];
        values[hole] = values[j];
        hole = j;
      }
    }
    keys[hole] = EMPTY;
    size--;
    return old;
  }

  long[] keysSorted() {
    long[] out = new long[size];
    int n = 0;
    for (long k : keys) {
      if (k != EMPTY) {
        out[n++] = k;
      }
    }
    Arrays.sort(out);
    return out;
  }

  long heapBytes() {
    return keys.length * 12L + 32;
  }

  private void resize(int capacity) {
    long[] oldKeys = keys;
    int[] oldValues = values;
    keys = new long[capacity];
    Arrays.fill(keys, EMPTY);
    values = new int[capacity];
    mask = capacity - 1;
    size = 0;
    for (int i = 0; i < oldKeys.length; i++) {
      if (oldKeys[i] != EMPTY) {
        put(oldKeys[i], oldValues[i]);
      }
    }
  }
}
