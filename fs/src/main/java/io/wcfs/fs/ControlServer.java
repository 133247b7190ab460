package io.wcfs.fs;

import io.wcfs.core.CacheStats;
import io.wcfs.core.WriteCache;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The daemon's control socket (mode 0600, in an owner-only directory). One request line per
 * connection: {@code status}, {@code status-json}, {@code flush} (streams progress lines, then
 * {@code done} or {@code error MESSAGE}).
 */
final class ControlServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ControlServer.class);
  private final Path socket;
  private final ServerSocketChannel server;
  private final WriteCache cache;
  /** The mount's claim on its backing directory: a flush gives up once it is lost. */
  private final BackingClaim claim;
  private final Supplier<Map<String, Object>> mountInfo;
  private final Thread thread;

  ControlServer(Path socket, WriteCache cache, BackingClaim claim,
      Supplier<Map<String, Object>> mountInfo)
      throws IOException {
    this.socket = socket;
    this.cache = cache;
    this.claim = claim;
    this.mountInfo = mountInfo;
    Files.deleteIfExists(socket);
    server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
    server.bind(UnixDomainSocketAddress.of(socket));
    Files.setPosixFilePermissions(socket, PosixFilePermissions.fromString("rw-------"));
    thread = new Thread(this::serve, "wcfs-control");
    thread.setDaemon(true);
    thread.start();
  }

  private void serve() {
    while (server.isOpen()) {
      try {
        SocketChannel ch = server.accept();
        Thread t = new Thread(() -> handle(ch), "wcfs-control-client");
        t.setDaemon(true);
        t.start();
      } catch (IOException e) {
        if (server.isOpen()) {
          LOG.warn("control socket: {}", e.toString());
        }
      }
    }
  }

  private void handle(SocketChannel ch) {
    try (ch;
        BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch),
            StandardCharsets.UTF_8));
        OutputStream out = Channels.newOutputStream(ch)) {
      String cmd = in.readLine();
      if (cmd == null) {
        return;
      }
      switch (cmd.trim()) {
        case "status" -> send(out, StatusReport.table(StatusReport.fields(cache.stats(),
            mountInfo.get())));
        case "status-json" -> send(out, StatusReport.json(StatusReport.fields(cache.stats(),
            mountInfo.get())) + "\n");
        case "flush" -> flush(out);
        default -> send(out, "error unknown command " + cmd + "\n");
      }
    } catch (IOException e) {
      LOG.debug("control client: {}", e.toString());
    }
  }

  private void flush(OutputStream out) throws IOException {
    Thread progress = new Thread(() -> {
      try {
        while (!Thread.currentThread().isInterrupted()) {
          Thread.sleep(500);
          send(out, "progress " + cache.stats().space().dirtyBlocks() + "\n");
        }
      } catch (InterruptedException | IOException e) {
        // flush finished, or the client went away
      }
    });
    progress.setDaemon(true);
    progress.start();
    try {
      CacheStats before = cache.stats();
      long start = System.nanoTime();
      BackingClaim.drain(cache, claim, Long.MAX_VALUE / 2_000_000);
      long nanos = System.nanoTime() - start;
      progress.interrupt();
      progress.join();
      long bytes = (cache.stats().writeback().writtenBackBlocks()
          - before.writeback().writtenBackBlocks()) * before.space().blockSize();
      send(out, "done " + bytes + " " + nanos + "\n");
    } catch (IOException e) {
      progress.interrupt();
      // "lost": the claim on the backing directory is gone, writeback will not happen here
      send(out, (claim != null && claim.lostReason() != null ? "lost " : "error ")
          + e.getMessage() + "\n");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static synchronized void send(OutputStream out, String text) throws IOException {
    out.write(text.getBytes(StandardCharsets.UTF_8));
    out.flush();
  }

  @Override
  public void close() throws IOException {
    server.close();
    Files.deleteIfExists(socket);
  }
}
