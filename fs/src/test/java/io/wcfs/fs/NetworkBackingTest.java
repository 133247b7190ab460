package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Collectors;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real network filesystem as the backing directory: sshfs, served by an sshd of the test's
 * own on 127.0.0.1 ({@link SshfsServer}). sshfs numbers inodes itself, in the order names are
 * looked up, afresh at every mount: the inode numbers the cache recorded mean nothing after
 * the backing filesystem is remounted, and fsync'd data must not be lost for that. (Fails
 * until recovery stops dropping cached files whose backing inode number changed; a recovery
 * that merely skips the inode check serves one file's cached blocks for the other here.)
 */
@Timeout(300)
class NetworkBackingTest {
  private static final int OLD_SIZE = 64 * 1024;
  private static final int NEW_SIZE = 1 << 20;
  private static final int PATCH_OFFSET = 12_345; // unaligned, spans two 4 KiB blocks
  private static final int PATCH_SIZE = 5_000;

  @TempDir Path tmp;

  @Test
  @DisplayName("sshfs backing: fsync'd data survives kill -9 and an sshfs remount that renumbers"
      + " inodes")
  void killNineThenRemountBacking() throws Exception {
    byte[] oldBytes = bytes(OLD_SIZE, 1);
    byte[] newBytes = bytes(NEW_SIZE, 2);
    byte[] patch = bytes(PATCH_SIZE, 3);
    byte[] oldExpected = oldBytes.clone();
    System.arraycopy(patch, 0, oldExpected, PATCH_OFFSET, PATCH_SIZE);

    // The watchdog is below @Timeout: a hung sshfs is killed, so the test thread comes back.
    SshfsServer ssh = SshfsServer.start(tmp, Duration.ofSeconds(240));
    WcfsProcess wcfs = null;
    try {
      Path server = ssh.serverDir;
      Files.write(server.resolve("old.bin"), oldBytes); // an existing file on the server
      // and an empty one, which the test fills through the mount: a file created through the
      // mount has no inode on the server until writeback applies its record, and the scenario
      // is about files that have one.
      Files.createFile(server.resolve("new.bin"));
      ssh.mount();
      wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir("NetworkBackingTest"), ssh.mountpoint,
          Files.createDirectories(tmp.resolve("m")));
      // sshfs's locks stay on this machine: refused, with the reason, unless the user
      // promises that no other machine writes there.
      WcfsProcess.Result refused = WcfsProcess.run(60, "mount", "--cache-size", "64M",
          wcfs.cacheDir.toString(), ssh.mountpoint.toString(), wcfs.mountpoint.toString());
      assertTrue(refused.exitCode() == 2 && refused.err().contains("is on fuse.sshfs")
          && refused.err().contains("--single-machine"), "mount over sshfs without"
          + " --single-machine: " + refused.all());
      wcfs.mount("--single-machine");
      Path mnt = wcfs.mountpoint;
      try (FileChannel c = FileChannel.open(mnt.resolve("new.bin"), StandardOpenOption.WRITE)) {
        writeFully(c, newBytes, 0);
        c.force(true);
      }
      try (FileChannel c = FileChannel.open(mnt.resolve("old.bin"), StandardOpenOption.WRITE)) {
        writeFully(c, patch, PATCH_OFFSET);
        c.force(true);
      }
      // A file created through the mount: a journaled name, on the server only after writeback.
      try (FileChannel c = FileChannel.open(mnt.resolve("created.bin"),
          StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
        writeFully(c, patch, 0);
        c.force(true);
      }
      long oldIno = ino(ssh.mountpoint.resolve("old.bin"));
      long newIno = ino(ssh.mountpoint.resolve("new.bin"));

      wcfs.kill9();
      ssh.unmount();
      // The scenario needs the fsync'd data to be in the cache only, not yet written back.
      assertArrayEquals(oldBytes, Files.readAllBytes(server.resolve("old.bin")),
          "precondition: old.bin's overwrite was not written back before the kill");
      assertFalse(Files.exists(server.resolve("new.bin"))
              && Arrays.equals(newBytes, Files.readAllBytes(server.resolve("new.bin"))),
          "precondition: new.bin was not written back before the kill");

      ssh.mount();
      // sshfs hands out inode numbers from a fresh counter in lookup order: look the names up
      // in the order opposite to their old numbers (as any other client of the mount might),
      // so that recovery cannot find them by chance under the numbers it recorded.
      long newInoAfter;
      long oldInoAfter;
      if (oldIno < newIno) {
        newInoAfter = ino(ssh.mountpoint.resolve("new.bin"));
        oldInoAfter = ino(ssh.mountpoint.resolve("old.bin"));
      } else {
        oldInoAfter = ino(ssh.mountpoint.resolve("old.bin"));
        newInoAfter = ino(ssh.mountpoint.resolve("new.bin"));
      }
      assertTrue(oldInoAfter != oldIno || newInoAfter != newIno, "the sshfs remount changed no"
          + " inode number (old.bin " + oldIno + " -> " + oldInoAfter + ", new.bin " + newIno
          + " -> " + newInoAfter + "): the scenario is not exercised");

      wcfs.mount("--single-machine");
      WcfsProcess w = wcfs;
      String where = " (inodes: old.bin " + oldIno + " -> " + oldInoAfter + ", new.bin "
          + newIno + " -> " + newInoAfter + ")";
      assertAll("after kill -9 and an sshfs remount, through the wcfs mount" + where,
          () -> assertArrayEquals(newBytes, Files.readAllBytes(mnt.resolve("new.bin")),
              "new.bin (1 MiB written and fsync'd)"),
          () -> assertArrayEquals(oldExpected, Files.readAllBytes(mnt.resolve("old.bin")),
              "old.bin (5,000 bytes at " + PATCH_OFFSET + " overwritten and fsync'd)"),
          () -> assertArrayEquals(patch, Files.readAllBytes(mnt.resolve("created.bin")),
              "created.bin (created, written and fsync'd)"),
          () -> assertFalse(w.log().contains("dropping"), "the daemon dropped cached data:\n"
              + droppingLines(w.log())));

      wcfs.umount();
      ssh.unmount(); // every write of the writeback has reached the server
      assertAll("in the server's directory after `wcfs umount`" + where,
          () -> assertArrayEquals(newBytes, Files.readAllBytes(server.resolve("new.bin")),
              "new.bin"),
          () -> assertArrayEquals(oldExpected, Files.readAllBytes(server.resolve("old.bin")),
              "old.bin"),
          () -> assertArrayEquals(patch, Files.readAllBytes(server.resolve("created.bin")),
              "created.bin"),
          () -> assertFalse(w.log().contains("dropping"), "the daemon dropped cached data:\n"
              + droppingLines(w.log())));
    } catch (Throwable t) {
      t.addSuppressed(new AssertionError("what the servers said:" + ssh.logs()
          + (wcfs == null ? "" : wcfs.log())));
      throw t;
    } finally {
      try {
        if (wcfs != null) {
          wcfs.close(); // unmounts wcfs (writing back) before its backing goes away
        }
      } finally {
        try {
          ssh.close();
        } finally {
          if (wcfs != null) {
            WcfsProcess.deleteTree(wcfs.cacheDir);
          }
        }
      }
    }
  }

  private static String droppingLines(String log) {
    return log.lines().filter(l -> l.contains("dropping")).collect(Collectors.joining("\n"));
  }

  private static long ino(Path p) throws java.io.IOException {
    return (Long) Files.getAttribute(p, "unix:ino");
  }

  private static byte[] bytes(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static void writeFully(FileChannel c, byte[] b, long at) throws java.io.IOException {
    ByteBuffer buf = ByteBuffer.wrap(b);
    while (buf.hasRemaining()) {
      c.write(buf, at + buf.position());
    }
  }
}
