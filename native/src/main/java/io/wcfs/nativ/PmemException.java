package io.wcfs.nativ;

/** A libpmem call failed; the message is libpmem's own {@code pmem_errormsg()}. */
public final class PmemException extends NativeIOException {
  public PmemException(String call, String pmemMessage, int errno) {
    super(call + ": " + pmemMessage, errno);
  }
}
