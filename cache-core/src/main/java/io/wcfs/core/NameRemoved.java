package io.wcfs.core;

import java.nio.file.NoSuchFileException;

/**
 * A name the namespace journal shows as removed: the answer to most lookups of a file that
 * comes and goes (a SQLite rollback journal is looked up right after each unlink). It carries
 * no stack trace: it is an answer, not a fault, and filling one in through the FUSE upcall's
 * deep stack cost more than the rest of the lookup.
 */
final class NameRemoved extends NoSuchFileException {
  private static final long serialVersionUID = 1L;

  NameRemoved(String path) {
    super(path);
  }

  @Override
  public synchronized Throwable fillInStackTrace() {
    return this;
  }
}
