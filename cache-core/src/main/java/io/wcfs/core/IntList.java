package io.wcfs.core;

import java.util.Arrays;

/** A growable list of ints (slot numbers) without boxing. */
final class IntList {
  private int[] items = new int[16];
  private int size;

  void add(int v) {
    if (size == items.length) {
      items = Arrays.copyOf(items, size * 2);
    }
    items[size++] = v;
  }

  int get(int i) {
    return items[i];
  }

  int size() {
    return size;
  }

  boolean isEmpty() {
    return size == 0;
  }

  int[] toArray() {
    return Arrays.copyOf(items, size);
  }
}
