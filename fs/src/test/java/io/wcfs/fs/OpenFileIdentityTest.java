package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A file wcfs holds open is the file behind its descriptor, whatever names it has now: data
 * fsync'd through the descriptor after a rename, or after an unlink of the open file, reaches
 * that file and is never dropped because its old path is gone.
 */
@Timeout(180)
class OpenFileIdentityTest {
  private static final int BLOCK = 4096;
  private static final int BLOCKS = 64;

  private interface Scenario {
    /** Changes the open file's names through the mount; returns where its data should end. */
    Path rename(Path mnt, Path a) throws Exception;
  }

  @Test
  @DisplayName("rename while open: blocks fsync'd through the old descriptor all reach the file")
  void renameWhileOpen() throws Exception {
    run("rename", (mnt, a) -> {
      Files.move(a, mnt.resolve("B"));
      return Path.of("B");
    });
  }

  @Test
  @DisplayName("unlink while open: fsync'd blocks stay readable, nothing dropped")
  void unlinkWhileOpen() throws Exception {
    run("unlink", (mnt, a) -> {
      Files.delete(a); // the name goes; the descriptor keeps the file (-o hard_remove)
      return null;
    });
  }

  private void run(String name, Scenario scenario) throws Exception {
    Path tmp = Files.createTempDirectory("wcfs-identity-" + name);
    Path backing = Files.createDirectories(tmp.resolve("backing"));
    Path mnt = Files.createDirectories(tmp.resolve("mnt"));
    WcfsProcess wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir("identity-" + name), backing,
        mnt);
    try {
      byte[] expected = new byte[BLOCKS * BLOCK];
      new Random(7).nextBytes(expected);
      Files.write(backing.resolve("A"), expected);
      wcfs.mount("--writeback-jobs", "1");
      Path where;
      try (FileChannel ch = FileChannel.open(mnt.resolve("A"), StandardOpenOption.READ,
          StandardOpenOption.WRITE)) {
        ch.read(ByteBuffer.allocate(BLOCK), 0); // wcfs opens the backing file now
        byte[] head = new byte[100];
        Arrays.fill(head, (byte) 0x5a);
        ch.write(ByteBuffer.wrap(head), 0);
        ch.force(true);
        System.arraycopy(head, 0, expected, 0, head.length);
        where = scenario.rename(mnt, mnt.resolve("A"));
        byte[] odd = new byte[BLOCK];
        for (int b = 1; b < BLOCKS; b += 2) {
          Arrays.fill(odd, (byte) b);
          ch.write(ByteBuffer.wrap(odd), (long) b * BLOCK);
          System.arraycopy(odd, 0, expected, b * BLOCK, BLOCK);
        }
        ch.force(true);
        WcfsProcess.Result flush = WcfsProcess.run(120, "flush", mnt.toString());
        assertEquals(0, flush.exitCode(), flush.all());
        ByteBuffer back = ByteBuffer.allocate(expected.length);
        while (back.hasRemaining() && ch.read(back, back.position()) > 0) {
          // read the whole file back through the same descriptor
        }
        assertArrayEquals(expected, back.array(), "every fsync'd byte reads back after flush");
      }
      String log = wcfs.log();
      assertFalse(log.contains("dropping"), "nothing dropped:" + log);
      assertFalse(log.contains("behind wcfs's back"), "no false alarm:" + log);
      wcfs.umount();
      if (where != null) {
        assertArrayEquals(expected, Files.readAllBytes(backing.resolve(where)),
            "the renamed backing file holds every fsync'd block");
      }
    } catch (Exception | AssertionError e) {
      throw new AssertionError(e + wcfs.log(), e);
    } finally {
      wcfs.close();
      WcfsProcess.deleteTree(wcfs.cacheDir);
      WcfsProcess.deleteTree(tmp);
    }
  }
}
