package io.wcfs.fs;

/** The concurrency test again, with FUSE requests served on one thread (--single-threaded). */
class SingleThreadedMountTest extends ConcurrentMountTest {
  @Override
  String[] mountOptions() {
    return new String[] {"--cache-size", "4M", "--single-threaded"};
  }
}
