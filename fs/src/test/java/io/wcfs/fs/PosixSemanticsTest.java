package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Each scenario runs in a fresh directory of a plain ext4/tmp directory and of the mount; the
 * outcomes (results, or the exception/errno) must be identical. After unmount the backing
 * directory must hold what the reference holds.
 */
@Timeout(120)
class PosixSemanticsTest extends MountTestBase {
  interface Scenario {
    String run(Path dir) throws Exception;
  }

  static final Map<String, Scenario> SCENARIOS = new LinkedHashMap<>();

  private static String bytes(Path p) throws IOException {
    return new String(Files.readAllBytes(p), StandardCharsets.ISO_8859_1);
  }

  private static String outcome(Scenario s, Path dir) {
    try {
      return "ok " + s.run(dir);
    } catch (FileSystemException e) {
      // The errno as Java names it, without the path (which differs between the two trees).
      return "error " + e.getClass().getSimpleName() + " " + e.getReason();
    } catch (Exception e) {
      return "error " + e.getClass().getSimpleName();
    }
  }

  static {
    SCENARIOS.put("create, write, read", d -> {
      Files.writeString(d.resolve("f"), "hello world");
      return bytes(d.resolve("f")) + " size=" + Files.size(d.resolve("f"));
    });
    SCENARIOS.put("overwrite middle, extend past a hole", d -> {
      Path f = d.resolve("f");
      Files.write(f, new byte[10000]);
      try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
        r.seek(4090);
        r.write("ACROSS-BLOCKS".getBytes());
        r.seek(50000);
        r.write('Z');
      }
      byte[] all = Files.readAllBytes(f);
      return all.length + " " + new String(all, 4088, 20, StandardCharsets.ISO_8859_1).trim()
          + " " + all[49999] + " " + all[50000];
    });
    SCENARIOS.put("O_APPEND", d -> {
      Path f = d.resolve("f");
      Files.writeString(f, "one,");
      Files.writeString(f, "two,", StandardOpenOption.APPEND);
      Files.writeString(f, "three", StandardOpenOption.APPEND);
      return bytes(f);
    });
    SCENARIOS.put("O_EXCL on an existing file", d -> {
      Files.writeString(d.resolve("f"), "x");
      Files.writeString(d.resolve("f"), "y", StandardOpenOption.CREATE_NEW);
      return "no error";
    });
    SCENARIOS.put("O_TRUNC", d -> {
      Files.writeString(d.resolve("f"), "long content here");
      Files.writeString(d.resolve("f"), "short", StandardOpenOption.TRUNCATE_EXISTING);
      return bytes(d.resolve("f"));
    });
    SCENARIOS.put("O_SYNC and O_DSYNC writes, fsync, fdatasync", d -> {
      Path f = d.resolve("f");
      try (FileChannel c = FileChannel.open(f, StandardOpenOption.CREATE,
          StandardOpenOption.WRITE, StandardOpenOption.SYNC)) {
        c.write(ByteBuffer.wrap("sync ".getBytes()));
      }
      try (FileChannel c = FileChannel.open(f, StandardOpenOption.WRITE,
          StandardOpenOption.DSYNC, StandardOpenOption.APPEND)) {
        c.write(ByteBuffer.wrap("dsync ".getBytes()));
      }
      try (FileChannel c = FileChannel.open(f, StandardOpenOption.WRITE,
          StandardOpenOption.APPEND)) {
        c.write(ByteBuffer.wrap("fsync".getBytes()));
        c.force(true);
        c.force(false);
      }
      return bytes(f);
    });
    SCENARIOS.put("truncate down and up, ftruncate", d -> {
      Path f = d.resolve("f");
      byte[] data = new byte[9000];
      java.util.Arrays.fill(data, (byte) 'a');
      Files.write(f, data);
      try (FileChannel c = FileChannel.open(f, StandardOpenOption.WRITE)) {
        c.truncate(5000);
      }
      try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
        r.setLength(12000);
      }
      byte[] all = Files.readAllBytes(f);
      return all.length + " " + all[4999] + " " + all[5000] + " " + all[11999];
    });
    SCENARIOS.put("reads see writes through another handle at once", d -> {
      Path f = d.resolve("f");
      Files.write(f, new byte[100]);
      try (FileChannel w = FileChannel.open(f, StandardOpenOption.WRITE);
          FileChannel r = FileChannel.open(f, StandardOpenOption.READ)) {
        w.write(ByteBuffer.wrap("new".getBytes()), 10);
        ByteBuffer b = ByteBuffer.allocate(3);
        r.read(b, 10);
        return new String(b.array());
      }
    });
    SCENARIOS.put("unlink, also of an open file", d -> {
      Path f = d.resolve("f");
      Files.writeString(f, "still readable");
      try (FileChannel c = FileChannel.open(f, StandardOpenOption.READ,
          StandardOpenOption.WRITE)) {
        Files.delete(f);
        c.write(ByteBuffer.wrap("STILL".getBytes()), 0);
        ByteBuffer b = ByteBuffer.allocate(14);
        c.read(b, 0);
        return new String(b.array()) + " exists=" + Files.exists(f);
      }
    });
    SCENARIOS.put("unlink a missing file", d -> {
      Files.delete(d.resolve("missing"));
      return "no error";
    });
    SCENARIOS.put("rename over an existing file", d -> {
      Files.writeString(d.resolve("a"), "from a");
      Files.writeString(d.resolve("b"), "old b");
      Files.move(d.resolve("a"), d.resolve("b"), StandardCopyOption.REPLACE_EXISTING);
      return bytes(d.resolve("b")) + " a=" + Files.exists(d.resolve("a"));
    });
    SCENARIOS.put("rename a directory holding written files", d -> {
      Files.createDirectories(d.resolve("x/y"));
      Files.writeString(d.resolve("x/y/f"), "deep");
      Files.move(d.resolve("x"), d.resolve("z"));
      Files.writeString(d.resolve("z/y/f"), "+more", StandardOpenOption.APPEND);
      return bytes(d.resolve("z/y/f"));
    });
    SCENARIOS.put("rename a directory over a non-empty one", d -> {
      Files.createDirectories(d.resolve("x"));
      Files.createDirectories(d.resolve("y"));
      Files.writeString(d.resolve("y/f"), "f");
      Files.move(d.resolve("x"), d.resolve("y"), StandardCopyOption.REPLACE_EXISTING);
      return "no error";
    });
    SCENARIOS.put("hard link shares data", d -> {
      Files.writeString(d.resolve("a"), "shared");
      Files.createLink(d.resolve("b"), d.resolve("a"));
      Files.writeString(d.resolve("b"), "SHARED!");
      Files.delete(d.resolve("a"));
      return bytes(d.resolve("b")) + " links=" + Files.getAttribute(d.resolve("b"), "unix:nlink");
    });
    SCENARIOS.put("symlink and readlink", d -> {
      Files.writeString(d.resolve("target"), "t");
      Files.createSymbolicLink(d.resolve("link"), Path.of("target"));
      return Files.readSymbolicLink(d.resolve("link")) + " " + bytes(d.resolve("link"))
          + " " + Files.isSymbolicLink(d.resolve("link"));
    });
    SCENARIOS.put("chmod", d -> {
      Files.writeString(d.resolve("f"), "x");
      Files.setPosixFilePermissions(d.resolve("f"), PosixFilePermissions.fromString("rw-r-----"));
      return PosixFilePermissions.toString(Files.getPosixFilePermissions(d.resolve("f")));
    });
    SCENARIOS.put("chown", d -> {
      Files.writeString(d.resolve("f"), "x");
      Files.setAttribute(d.resolve("f"), "unix:uid", 1234);
      Files.setAttribute(d.resolve("f"), "unix:gid", 4321);
      return Files.getAttribute(d.resolve("f"), "unix:uid") + ":"
          + Files.getAttribute(d.resolve("f"), "unix:gid");
    });
    SCENARIOS.put("utimens after writing keeps the time set", d -> {
      Files.writeString(d.resolve("f"), "x");
      FileTime t = FileTime.fromMillis(1_000_000_000_000L);
      Files.setLastModifiedTime(d.resolve("f"), t);
      return Files.getLastModifiedTime(d.resolve("f")).toString();
    });
    SCENARIOS.put("mkdir existing, rmdir non-empty, rmdir", d -> {
      Files.createDirectory(d.resolve("x"));
      Files.writeString(d.resolve("x/f"), "f");
      List<String> out = new ArrayList<>();
      out.add(outcome(dd -> {
        Files.createDirectory(dd.resolve("x"));
        return "";
      }, d));
      out.add(outcome(dd -> {
        Files.delete(dd.resolve("x"));
        return "";
      }, d));
      Files.delete(d.resolve("x/f"));
      Files.delete(d.resolve("x"));
      return String.join("; ", out) + " gone=" + !Files.exists(d.resolve("x"));
    });
    SCENARIOS.put("readdir", d -> {
      for (String n : List.of("c", "a", "b")) {
        Files.writeString(d.resolve(n), n);
      }
      Files.createDirectory(d.resolve("sub"));
      try (Stream<Path> s = Files.list(d)) {
        return s.map(p -> p.getFileName().toString()).sorted().toList().toString();
      }
    });
    SCENARIOS.put("read a missing file, open a directory for writing", d -> {
      Files.createDirectory(d.resolve("dir"));
      return outcome(dd -> bytes(dd.resolve("missing")), d) + "; "
          + outcome(dd -> {
            Files.writeString(dd.resolve("dir"), "x");
            return "";
          }, d);
    });
    SCENARIOS.put("a symlink leaves its target's mode alone", d -> {
      Path f = d.resolve("f");
      Files.writeString(f, "x");
      Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-------"));
      Files.createSymbolicLink(d.resolve("rel"), Path.of("f"));
      Files.createSymbolicLink(d.resolve("abs"), f.toAbsolutePath());
      return PosixFilePermissions.toString(Files.getPosixFilePermissions(f));
    });
    SCENARIOS.put("mknod fifo", d -> {
      new ProcessBuilder("mkfifo", d.resolve("p").toString()).start().waitFor();
      return "fifo=" + Files.getAttribute(d.resolve("p"), "unix:mode", LinkOption.NOFOLLOW_LINKS)
          .toString();
    });
    SCENARIOS.put("getattr shows the size of cached writes", d -> {
      Path f = d.resolve("f");
      try (FileChannel c = FileChannel.open(f, StandardOpenOption.CREATE,
          StandardOpenOption.WRITE)) {
        c.write(ByteBuffer.wrap(new byte[12345]), 100000);
        return "size=" + Files.size(f) + " blocks>0=" + ((Long) Files.getAttribute(f,
            "unix:size") > 0);
      }
    });
    SCENARIOS.put("fallocate extends with zeros", d -> {
      Path f = d.resolve("f");
      Files.writeString(f, "abc");
      try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
        r.setLength(8192);
      }
      return Files.size(f) + " " + Files.readAllBytes(f)[8191];
    });
  }

  static Stream<String> scenarios() {
    return SCENARIOS.keySet().stream();
  }

  @DisplayName("same results and errors as a plain directory")
  @ParameterizedTest(name = "{0}")
  @MethodSource("scenarios")
  void sameAsPlainDirectory(String name) throws Exception {
    String dirName = "s" + Math.abs(name.hashCode());
    Path ref = Files.createDirectories(reference.resolve(dirName));
    Path mine = Files.createDirectories(mnt.resolve(dirName));
    Scenario s = SCENARIOS.get(name);
    assertEquals(outcome(s, ref), outcome(s, mine), name);
  }

  @org.junit.jupiter.api.Test
  @DisplayName("statfs answers for the backing filesystem")
  void statfs() throws Exception {
    assertEquals(Files.getFileStore(backing).getTotalSpace(),
        Files.getFileStore(mnt).getTotalSpace());
    assertEquals("wcfs", Files.getFileStore(mnt).name());
    // Name length, block sizes, total blocks and inodes: what does not move between two calls.
    assertEquals(statfsFields(backing), statfsFields(mnt));
  }

  private static String statfsFields(Path p) throws Exception {
    Process proc = new ProcessBuilder("stat", "-f", "-c", "%l %s %S %b %c", p.toString())
        .redirectErrorStream(true).start();
    String out = new String(proc.getInputStream().readAllBytes()).trim();
    assertEquals(0, proc.waitFor(), out);
    return out;
  }
}
