package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A seeded random sequence of 10,000 operations applied to the mount and to a plain reference
 * directory, compared byte for byte during the run and, after unmount, in the backing
 * directory. Reproduce with -Dwcfs.ops.seed=N.
 */
@Timeout(600)
class RandomOpsTest extends MountTestBase {
  private static final int OPS = 10_000;

  @Override
  String[] mountOptions() {
    // A small cache so writeback, waiting and copy-on-write all happen during the run.
    return new String[] {"--cache-size", "3M", "--autocommit-time", "50"};
  }

  private interface Op {
    void apply(Path root) throws IOException;
  }

  private static String outcome(Op op, Path root) {
    try {
      op.apply(root);
      return "ok";
    } catch (IOException e) {
      return e.getClass().getSimpleName();
    }
  }

  @Test
  @DisplayName("10,000 random operations: mount equals a plain directory, and so does backing")
  void randomOperations() throws Exception {
    long seed = Long.getLong("wcfs.ops.seed", 20261125L);
    Random rnd = new Random(seed);
    List<String> names = List.of("a", "b", "c", "d/e", "d/f", "g/h");
    for (Path root : List.of(reference, mnt)) {
      Files.createDirectories(root.resolve("d"));
    }
    for (int i = 0; i < OPS; i++) {
      String name = names.get(rnd.nextInt(names.size()));
      String other = names.get(rnd.nextInt(names.size()));
      int kind = rnd.nextInt(100);
      long off = rnd.nextInt(4) == 0 ? rnd.nextInt(300_000) : rnd.nextInt(20_000);
      byte[] data = new byte[1 + rnd.nextInt(rnd.nextInt(10) == 0 ? 200_000 : 9_000)];
      rnd.nextBytes(data);
      long size = rnd.nextInt(60_000);
      Op op;
      if (kind < 45) {
        op = r -> {
          try (FileChannel c = FileChannel.open(r.resolve(name), StandardOpenOption.CREATE,
              StandardOpenOption.WRITE)) {
            c.write(ByteBuffer.wrap(data), off);
          }
        };
      } else if (kind < 55) {
        op = r -> {
          try (FileChannel c = FileChannel.open(r.resolve(name), StandardOpenOption.WRITE)) {
            c.force(true);
          }
        };
      } else if (kind < 65) {
        op = r -> {
          try (FileChannel c = FileChannel.open(r.resolve(name), StandardOpenOption.WRITE)) {
            c.truncate(size);
          }
        };
      } else if (kind < 70) {
        op = r -> Files.move(r.resolve(name), r.resolve(other),
            StandardCopyOption.REPLACE_EXISTING);
      } else if (kind < 75) {
        op = r -> Files.delete(r.resolve(name));
      } else if (kind < 78) {
        op = r -> Files.createDirectory(r.resolve(name.contains("/") ? name.split("/")[0]
            : "g"));
      } else {
        op = r -> {
          if (Files.exists(r.resolve(name))) {
            Files.readAllBytes(r.resolve(name));
          } else {
            throw new java.nio.file.NoSuchFileException(name);
          }
        };
      }
      String expected = outcome(op, reference);
      String actual = outcome(op, mnt);
      assertEquals(expected, actual, "seed " + seed + ", op " + i + " (kind " + kind + " on "
          + name + ")");
      if (i % 250 == 0 || kind >= 78) {
        compareTrees(reference, mnt, "seed " + seed + ", after op " + i);
      }
    }
    compareTrees(reference, mnt, "seed " + seed + ", end");
    wcfs.umount();
    compareTrees(reference, backing, "seed " + seed + ", backing after unmount");
  }

  static void compareTrees(Path expected, Path actual, String where) throws IOException {
    List<String> e = listFiles(expected);
    assertEquals(e, listFiles(actual), where + ": file list");
    for (String f : e) {
      Path p = expected.resolve(f);
      if (Files.isRegularFile(p)) {
        assertArrayEquals(Files.readAllBytes(p), Files.readAllBytes(actual.resolve(f)),
            where + ": " + f);
      }
    }
  }

  static List<String> listFiles(Path root) throws IOException {
    try (Stream<Path> s = Files.walk(root)) {
      List<String> out = new ArrayList<>();
      // BACKING/.wcfs is wcfs's own (the claim, BackingClaim), as the mount does not show it
      s.filter(p -> !p.equals(root) && !root.relativize(p).startsWith(BackingClaim.DIR))
          .forEach(p -> out.add(root.relativize(p).toString()
          + (Files.isDirectory(p) ? "/" : " " + sizeOf(p))));
      out.sort(null);
      return out;
    }
  }

  private static long sizeOf(Path p) {
    try {
      return Files.size(p);
    } catch (IOException e) {
      return -1;
    }
  }
}
