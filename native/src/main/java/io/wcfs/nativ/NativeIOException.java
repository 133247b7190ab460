package io.wcfs.nativ;

import java.io.IOException;

/** A failed native call, carrying the C errno (0 when the library reports none) and its message. */
public class NativeIOException extends IOException {
  private final int errno;

  public NativeIOException(String message, int errno) {
    super(message);
    this.errno = errno;
  }

  /** The errno reported by the failing call, or 0 when unknown. */
  public int errno() {
    return errno;
  }
}
