package io.wcfs.core;

import java.io.IOException;

/** The cache memory failed earlier; writes and commits fail (EIO) until remount. */
public final class CacheErrorException extends IOException {
  public CacheErrorException(IOException cause) {
    super("the cache has failed (" + cause.getMessage() + "); writes and fsync return EIO,"
        + " reads still work; unmount, check the cache device, remount", cause);
  }
}
