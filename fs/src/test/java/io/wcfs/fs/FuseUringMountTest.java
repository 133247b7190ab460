package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The mount served over io_uring (--fuse-transport uring): a representative set of operations,
 * then kill -9 and a remount that keeps every fsync'd write. Skipped where the kernel has no
 * FUSE over io_uring, or where it is off and we may not turn it on.
 */
@Timeout(240)
class FuseUringMountTest extends OwnMountTest {
  private static final String[] URING = {"--fuse-transport", "uring"};

  private static void assumeKernelCan() throws Exception {
    Assumptions.assumeTrue(Files.exists(FuseUring.PARAMETER),
        "this kernel has no FUSE over io_uring (" + FuseUring.PARAMETER + ")");
    boolean on = Files.readString(FuseUring.PARAMETER).trim().equals("Y");
    Assumptions.assumeTrue(on || io.wcfs.nativ.LibC.geteuid() == 0,
        "enable_uring is off and only root may turn it on");
  }

  private String status() throws Exception {
    return WcfsProcess.run(30, "status", "--json", wcfs.mountpoint.toString()).out();
  }

  private static byte[] random(Random rnd, int n) {
    byte[] b = new byte[n];
    rnd.nextBytes(b);
    return b;
  }

  @Test
  @DisplayName("over io_uring: writes, fsync, reads, namespace, readdir, xattrs, links;"
      + " kill -9 and a remount (auto) keep what was fsync'd")
  void operationsOverUring() throws Exception {
    assumeKernelCan();
    wcfs.mount(URING);
    assertTrue(status().contains("\"fuse_transport\": \"io_uring"), status() + wcfs.log());
    assertTrue(wcfs.log().contains("FUSE transport: io_uring"), wcfs.log());
    Path m = wcfs.mountpoint;
    Random rnd = new Random(16);

    // writes of 4 KiB to 1 MiB (the largest request), fsync, read back
    Path big = m.resolve("big");
    byte[] data = random(rnd, 3 << 20);
    try (FileChannel c = FileChannel.open(big, StandardOpenOption.CREATE,
        StandardOpenOption.WRITE)) {
      c.write(ByteBuffer.wrap(data));
      for (int i = 0; i < 200; i++) { // random 4 KiB overwrites
        int off = rnd.nextInt(data.length / 4096) * 4096;
        byte[] b = random(rnd, 4096);
        System.arraycopy(b, 0, data, off, 4096);
        c.write(ByteBuffer.wrap(b), off);
        if (i % 10 == 0) {
          c.force(true);
        }
      }
      c.force(true);
    }
    assertArrayEquals(data, Files.readAllBytes(big));
    assertEquals(data.length, Files.size(big));

    // create, rename, unlink, mkdir, readdir of a few hundred names
    Path dir = Files.createDirectories(m.resolve("d/e"));
    TreeSet<String> names = new TreeSet<>();
    for (int i = 0; i < 300; i++) {
      String name = "file-with-a-longish-name-" + i;
      Files.writeString(dir.resolve(name), "n" + i);
      names.add(name);
    }
    for (int i = 0; i < 300; i += 3) {
      Files.move(dir.resolve("file-with-a-longish-name-" + i), dir.resolve("renamed-" + i));
      names.remove("file-with-a-longish-name-" + i);
      names.add("renamed-" + i);
    }
    for (int i = 1; i < 300; i += 7) {
      if (i % 3 == 0) {
        continue; // renamed above
      }
      Files.delete(dir.resolve("file-with-a-longish-name-" + i));
      names.remove("file-with-a-longish-name-" + i);
    }
    try (Stream<Path> s = Files.list(dir)) {
      assertEquals(names, s.map(p -> p.getFileName().toString())
          .collect(Collectors.toCollection(TreeSet::new)));
    }
    assertEquals("n3", Files.readString(dir.resolve("renamed-3")));
    assertFalse(Files.exists(dir.resolve("file-with-a-longish-name-1")));

    // truncate, hard link (its attributes are patched on the way out), symlink
    Path t = m.resolve("t");
    Files.writeString(t, "0123456789");
    try (FileChannel c = FileChannel.open(t, StandardOpenOption.WRITE)) {
      c.truncate(4);
    }
    assertEquals("0123", Files.readString(t));
    Files.createLink(m.resolve("t2"), t);
    assertEquals(2, Files.getAttribute(t, "unix:nlink"));
    Files.createSymbolicLink(m.resolve("s"), Path.of("t"));
    assertEquals(Path.of("t"), Files.readSymbolicLink(m.resolve("s")));
    assertEquals("0123", Files.readString(m.resolve("s")));

    // extended attributes: set, get, list, remove (a value larger than the op header)
    UserDefinedFileAttributeView x = Files.getFileAttributeView(t,
        UserDefinedFileAttributeView.class);
    byte[] value = random(rnd, 3000);
    x.write("wcfs.test", ByteBuffer.wrap(value));
    ByteBuffer got = ByteBuffer.allocate(x.size("wcfs.test"));
    x.read("wcfs.test", got);
    assertArrayEquals(value, got.array());
    assertTrue(x.list().contains("wcfs.test"), x.list().toString());
    x.delete("wcfs.test");
    assertFalse(x.list().contains("wcfs.test"));

    // several writers with fsync at once: several entries of a queue busy together
    ExecutorService pool = Executors.newFixedThreadPool(4);
    List<Future<byte[]>> writers = new ArrayList<>();
    for (int w = 0; w < 4; w++) {
      Path f = m.resolve("w" + w);
      long seed = w;
      writers.add(pool.submit(() -> {
        Random r = new Random(seed);
        byte[] all = random(r, 512 * 1024);
        try (FileChannel c = FileChannel.open(f, StandardOpenOption.CREATE,
            StandardOpenOption.WRITE)) {
          for (int off = 0; off < all.length; off += 4096) {
            c.write(ByteBuffer.wrap(all, off, 4096), off);
            c.force(false);
          }
        }
        return all;
      }));
    }
    List<byte[]> written = new ArrayList<>();
    for (Future<byte[]> f : writers) {
      written.add(f.get());
    }
    pool.shutdown();
    for (int w = 0; w < 4; w++) {
      assertArrayEquals(written.get(w), Files.readAllBytes(m.resolve("w" + w)), "w" + w);
    }
    long ringRequests = wcfs.statusNumber("fuse_ring_requests");
    assertTrue(ringRequests > 1000, "requests over the rings: " + ringRequests);

    // kill -9, remount (auto: io_uring where the kernel offers it): everything fsync'd is there
    wcfs.kill9();
    wcfs.mount("--fuse-transport", "auto");
    assertTrue(status().contains("\"fuse_transport\": \"io_uring"), status());
    assertArrayEquals(data, Files.readAllBytes(big));
    for (int w = 0; w < 4; w++) {
      assertArrayEquals(written.get(w), Files.readAllBytes(m.resolve("w" + w)), "w" + w);
    }
    Files.writeString(m.resolve("after"), "remounted", StandardCharsets.UTF_8);
    wcfs.umount();
    assertEquals("remounted", Files.readString(wcfs.backing.resolve("after")));
    assertArrayEquals(data, Files.readAllBytes(wcfs.backing.resolve("big")));
    assertTrue(wcfs.log().contains("unmounted; writing back"), wcfs.log());
  }

  @Test
  @DisplayName("a ring entry the kernel refuses: the mount falls back to /dev/fuse and works")
  void refusedEntryFallsBack() throws Exception {
    assumeKernelCan();
    wcfs.env.put("WCFS_URING_REFUSE_QUEUE", "0");
    wcfs.mount(URING);
    assertTrue(status().contains("\"fuse_transport\": \"/dev/fuse\""), status());
    assertTrue(wcfs.log().contains("FUSE over io_uring could not be set up"), wcfs.log());
    Files.writeString(wcfs.mountpoint.resolve("f"), "fallback");
    assertEquals("fallback", Files.readString(wcfs.mountpoint.resolve("f")));
    assertEquals(0, wcfs.statusNumber("fuse_ring_requests"));
    wcfs.umount();
    assertEquals("fallback", Files.readString(wcfs.backing.resolve("f")));
  }

  @Test
  @DisplayName("--fuse-transport dev (the default) serves over /dev/fuse; a bad value is refused")
  void devTransportAndBadValue() throws Exception {
    wcfs.mount("--fuse-transport", "dev");
    assertTrue(status().contains("\"fuse_transport\": \"/dev/fuse\""), status());
    Files.writeString(wcfs.mountpoint.resolve("f"), "x");
    assertEquals(0, wcfs.statusNumber("fuse_ring_requests"));
    wcfs.umount();
    WcfsProcess.Result r = WcfsProcess.run(60, "mount", "--fuse-transport", "pigeon",
        wcfs.cacheDir.toString(), wcfs.backing.toString(), wcfs.mountpoint.toString());
    assertTrue(r.exitCode() != 0 && r.all().contains("--fuse-transport pigeon is unknown"),
        r.all());
  }
}
