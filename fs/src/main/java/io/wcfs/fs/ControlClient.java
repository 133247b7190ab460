package io.wcfs.fs;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/** Talks to the daemon serving a mount point. */
final class ControlClient {
  private ControlClient() {}

  static Path socketOrFail(Path mountpoint) throws IOException {
    Path real = mountpoint.toAbsolutePath().normalize();
    Path socket = RuntimeDir.socketFor(real);
    if (!Files.exists(socket)) {
      if (Mounts.isWcfs(real)) {
        throw new UsageException("no wcfs daemon answers for " + real + " (it was killed?);"
            + " run `fusermount -u " + real + "` and mount again: the cache recovers"
            + " everything that was committed");
      }
      throw new UsageException(real + " is not a wcfs mount point; `mount -t fuse.wcfs` lists"
          + " the mounted ones");
    }
    return socket;
  }

  /** Whether a daemon listens on the control socket of {@code mountpoint} (absolute). */
  static boolean answers(Path mountpoint) throws IOException {
    Path socket = RuntimeDir.socketFor(mountpoint);
    if (!Files.exists(socket)) {
      return false;
    }
    try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
      ch.connect(UnixDomainSocketAddress.of(socket));
      return true;
    } catch (IOException e) {
      return false; // ECONNREFUSED: a socket file its daemon left behind
    }
  }

  /** Sends one request and passes every reply line to {@code lines}. */
  static void request(Path mountpoint, String command, Consumer<String> lines)
      throws IOException {
    Path socket = socketOrFail(mountpoint);
    try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
      ch.connect(UnixDomainSocketAddress.of(socket));
      ch.write(java.nio.ByteBuffer.wrap((command + "\n").getBytes(StandardCharsets.UTF_8)));
      BufferedReader in = new BufferedReader(
          new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
      for (String line; (line = in.readLine()) != null; ) {
        lines.accept(line);
      }
    } catch (java.net.ConnectException e) {
      throw new UsageException("the wcfs daemon for " + mountpoint + " is not running (stale"
          + " socket " + socket + "); run `fusermount -u " + mountpoint + "` and mount again");
    }
  }
}
