package io.wcfs.fs;

/** The concurrency test again, with FUSE requests served on one thread (--threads 1). */
class SingleThreadedMountTest extends ConcurrentMountTest {
  @Override
  String[] mountOptions() {
    return new String[] {"--cache-size", "4M", "--threads", "1"};
  }
}
