package io.wcfs.fs;

/** Bad input from the user: one sentence naming the problem and the fix; exit code 2. */
final class UsageException extends RuntimeException {
  UsageException(String message) {
    super(message);
  }
}
