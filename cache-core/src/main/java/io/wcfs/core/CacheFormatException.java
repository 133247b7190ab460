package io.wcfs.core;

import java.io.IOException;

/** The cache file is not a usable wcfs cache; the message says which check failed and the fix. */
public final class CacheFormatException extends IOException {
  public CacheFormatException(String message) {
    super(message);
  }
}
