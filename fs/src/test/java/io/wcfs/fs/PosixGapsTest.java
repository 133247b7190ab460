package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Behaviours where a mount once differed from a plain directory, each checked by running the
 * same shell script in a fresh directory of both and comparing what it printed. Shell tools
 * rather than Java: they reach the calls Java hides (umask, utimensat with UTIME_OMIT, mknod,
 * paths longer than the JDK accepts) and can run as another user. Mounted with allow_other so
 * that the unprivileged user nobody can reach the mount at all.
 */
@Timeout(300)
class PosixGapsTest extends MountTestBase {
  private static final String NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups";

  @Override
  String[] mountOptions() {
    return new String[] {"-o", "allow_other"};
  }

  @BeforeAll
  void letNobodyIn() throws Exception {
    // createTempDirectory made tmp owner-only; nobody must get through it to both trees.
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
  }

  /** Runs {@code script} with sh in {@code dir}; returns the exit code and everything printed. */
  private static String sh(Path dir, String script) throws Exception {
    Process p = new ProcessBuilder("sh", "-c", script).directory(dir.toFile())
        .redirectErrorStream(true).start();
    byte[] out = p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "script did not finish: " + script);
    return new String(out, StandardCharsets.UTF_8) + "exit " + p.exitValue();
  }

  /** The script's output in a fresh directory of the reference tree and of the mount. */
  private void assertSameAsPlainDirectory(String name, String script) throws Exception {
    String dirName = "g" + Math.abs((name + script).hashCode());
    List<String> outs = new ArrayList<>();
    for (Path top : List.of(reference, mnt)) {
      Path d = Files.createDirectories(top.resolve(dirName));
      Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rwxrwxrwx"));
      outs.add(sh(d, script));
    }
    assertEquals(outs.get(0), outs.get(1), name);
  }

  @Test
  @DisplayName("writing or truncating a set-ID file as another user clears the set-ID bits")
  void setIdBitsClearedOnWrite() throws Exception {
    assertSameAsPlainDirectory("write to 06777", "echo hi > f; chmod 06777 f; "
        + NOBODY + " sh -c 'echo more >> f'; stat -c %a f");
    assertSameAsPlainDirectory("truncate 06777", "echo hi > f; chmod 06777 f; "
        + NOBODY + " truncate -s 1 f; stat -c %a f");
    assertSameAsPlainDirectory("O_TRUNC 06777", "echo hi > f; chmod 06777 f; "
        + NOBODY + " sh -c ': > f'; stat -c %a f");
    // Without group-exec, set-group-ID stays unless the writer is outside the file's group.
    assertSameAsPlainDirectory("write to 02767 by a non-member", "echo hi > f; chmod 02767 f; "
        + NOBODY + " sh -c 'echo more >> f'; stat -c %a f");
    assertSameAsPlainDirectory("write to 04666 by the owner", "echo hi > f; chmod 04766 f; "
        + "chown 65534 f; " + NOBODY + " sh -c 'echo more >> f'; stat -c %a f");
    // The bits set through another name while the writer holds the file open: the kernel's
    // copy of the mode of the name written through predates them.
    assertSameAsPlainDirectory("chmod through a hard link while open", "echo hi > f; ln f g; "
        + "chmod 0666 f; " + NOBODY + " sh -c 'exec 3>>g; sleep 1; echo more >&3' & "
        + "sleep 0.3; chmod 06777 f; wait; stat -c %a f g");
  }

  @Test
  @DisplayName("st_nlink counts every name at once, on every name, for any kind of file")
  void linkCountsOnEveryName() throws Exception {
    for (String create : List.of("echo x > a", "mkfifo a", "mknod a c 1 3")) {
      assertSameAsPlainDirectory("links of " + create, create + "; stat -c '%n %h' a; "
          + "ln a b; stat -c '%n %h' a b; ln b c; stat -c '%n %h' a b c; "
          + "chmod 0601 b; chown 65534:65533 c; stat -c '%n %h %a %u %g' a b c; "
          + "rm a; stat -c '%n %h' b c; "
          + "mv b d; stat -c '%n %h' c d; "
          + "ln c e; " + create.replace(" a", " z") + "; mv z e; stat -c '%n %h' c d e");
    }
  }

  /** Reads what descriptor 3 holds from offset 0, as the script's perl sees it. */
  private static final String READ_FD3 = "perl -e 'open(F, \"+<&=3\") or die \"$!\"; "
      + "sysseek(F, 0, 0); sysread(F, $b, 1000); print $b'";

  @Test
  @DisplayName("a file unlinked or renamed over while open: nameless, readable, writable, gone at close")
  void unlinkedWhileOpen() throws Exception {
    // No .fuse_hidden names (-o hard_remove): the directory empties, st_nlink reads 0, and the
    // descriptor goes on reading and writing the file itself.
    assertSameAsPlainDirectory("open, unlink, rmdir", "mkdir d; exec 3<>d/f; echo one >&3; "
        + "rm d/f; echo two >&3; ls -A d; " + READ_FD3 + "; stat -L -c '%s %h' /proc/self/fd/3;"
        + " rmdir d && echo removed; echo three >&3; " + READ_FD3 + "; exec 3>&-; ls -A");
    assertSameAsPlainDirectory("rename over an open file", "echo old > t; exec 3<t; "
        + "echo new > n; mv n t; cat t; " + READ_FD3 + "; stat -L -c '%s %h' /proc/self/fd/3; "
        + "ls -A; exec 3<&-; ls -A; cat t");
    assertSameAsPlainDirectory("atomic save over a file open for writing", "exec 3<>t; "
        + "echo first >&3; echo second > t.tmp; mv t.tmp t; echo more >&3; " + READ_FD3
        + "; cat t; sleep 1.2; stat -L -c '%s %h' /proc/self/fd/3; exec 3>&-; ls -A; cat t");
  }

  @Test
  @DisplayName("utimensat sets exactly the times given, UTIME_OMIT included")
  void utimensatSticks() throws Exception {
    for (String create : List.of("echo x > f", "mkdir f", "mkfifo f", "mknod f c 1 3")) {
      assertSameAsPlainDirectory("times of " + create, create + "; stat -c '%X %Y' f >/dev/null; "
          + "touch -d @1900000000 f; stat -c '%X %Y' f; "
          + "touch -a -d @1910000000 f; stat -c '%X %Y' f; "
          + "touch -m -d @1950000000 f; stat -c '%X %Y' f");
    }
    assertSameAsPlainDirectory("times through another name", "echo x > f; ln f g; "
        + "stat -c '%X %Y' g >/dev/null; touch -a -d @1900000000 f; touch -m -d @1950000000 f; "
        + "stat -c '%X %Y' f g");
    assertSameAsPlainDirectory("times of a written file", "echo x > f; echo more >> f; "
        + "touch -a -d @1900000000 f; touch -m -d @1950000000 f; stat -c '%X %Y' f; "
        + "echo more >> f; touch -m -d @1950000000 f; stat -c '%Y' f");
  }

  @Test
  @DisplayName("new files, directories, fifos and nodes get the creator's mode and umask")
  void creatorsUmask() throws Exception {
    for (String umask : List.of("0", "002", "022", "077")) {
      assertSameAsPlainDirectory("umask " + umask, "umask " + umask + "; : > f; mkdir d; "
          + "mkfifo p; mknod c c 1 3; "
          + "perl -e 'use Fcntl; sysopen(F, \"o\", O_CREAT|O_WRONLY, 0620) or die \"$!\"; "
          + "mkdir(\"m\", 0751) or die \"$!\"' && stat -c '%n %a' f d p c o m");
    }
  }

  /** 20 directories of 203 bytes each: 4079 bytes, near PATH_MAX (4096 with its NUL). */
  private static final String DEEP;

  static {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < 20; i++) {
      b.append(i == 0 ? "" : "/").append(String.valueOf((char) ('a' + i)).repeat(203));
    }
    DEEP = b.toString();
  }

  @Test
  @DisplayName("what pjdfstest found: inode numbers, directory and change times, chown")
  void pjdfstestFindings() throws Exception {
    // rename/00.t: a file created through the mount kept its inode number only while the
    // engine held it; renamed by another name after writeback, it showed the backing one.
    assertSameAsPlainDirectory("inode after a rename by another name", "touch a; mv a b; "
        + "ln b a; i=$(stat -c %i a); mv b c; [ $(stat -c %i c) = $i ] && echo same; rm a c");
    // unlink/00.t: a journaled unlink changed the directory's times only at writeback.
    assertSameAsPlainDirectory("directory times after unlink", "mkdir d; touch d/f; "
        + "m=$(stat -c %Y d); c=$(stat -c %Z d); sleep 1.1; rm d/f; "
        + "[ $(stat -c %Y d) -gt $m ] && echo mtime; [ $(stat -c %Z d) -gt $c ] && echo ctime");
    // truncate/00.t, open/00.t: truncate and O_TRUNC in the cache left ctime as it was.
    assertSameAsPlainDirectory("ctime after truncate", "touch f; c=$(stat -c %Z f); "
        + "sleep 1.1; truncate -s 123 f; [ $(stat -c %Z f) -gt $c ] && echo ctime");
    // chown/00.t: chown of a file the journal created kept its set-ID bits.
    assertSameAsPlainDirectory("chown clears set-ID bits", "touch f g; chmod 06755 f; "
        + "chmod 06745 g; chown 65534 f g; stat -c %a f g");
  }

  @Test
  @DisplayName("names longer than a journal record: create, rename both ways, write, unlink")
  void namesLongerThanARecord() throws Exception {
    // pjdfstest's rename/01.t: a rename of a 255-byte name stored its path in a file version
    // of 200 bytes, past its staging buffer, and the daemon died in malloc.
    String n = "n".repeat(255);
    String m = "m".repeat(230);
    assertSameAsPlainDirectory("long names", "touch " + n + " && mv " + n + " s && mv s " + n
        + " && echo renamed; echo data > a && sync a && mv a " + m + " && cat " + m
        + "; echo more >> " + m + " && sync " + m + " && mv " + m + " b && cat b; "
        + "mv b " + n + " 2>/dev/null; ls; rm " + n + " && ls; "
        + "touch " + m + " && echo x > t && mv t " + m + " && cat " + m + " && rm " + m
        + " && ls; echo z > z && sync z && echo synced");
  }

  @Test
  @DisplayName("paths near PATH_MAX relative to the mount work as in a plain directory")
  void pathsNearPathMax() throws Exception {
    // Relative to its directory (the script's working directory) each path is under PATH_MAX;
    // the backing root plus the path from the mount's root is over it.
    assertTrue(backing.toString().length() + "/g0000000000/".length() + DEEP.length() > 4096);
    assertSameAsPlainDirectory("long paths", "d=" + DEEP + "; "
        + "mkdir -p $d && echo mkdir; "
        + "echo data > $d/f && echo open; cat $d/f; "
        + "echo more >> $d/f && stat -c %s $d/f; "
        + "truncate -s 3 $d/f && cat $d/f && echo; "
        + "chmod 0640 $d/f && stat -c %a $d/f; "
        + "chown 65534:65533 $d/f && stat -c '%u %g' $d/f; "
        + "touch -d @1900000000 $d/f && stat -c %Y $d/f; "
        + "ln $d/f $d/g && stat -c %h $d/g; "
        + "ln -s f $d/s && readlink $d/s && cat $d/s; "
        + "mv $d/g $d/h && ls $d; "
        + "mkfifo $d/p && stat -c %F $d/p; "
        + "mknod $d/c c 1 3 && stat -c %F $d/c; "
        + "mkdir $d/x && rmdir $d/x && echo rmdir; "
        + "test -r $d/f && test -w $d/f && echo access; "
        + "rm $d/h $d/p $d/c $d/s && ls $d; "
        + "rm -r " + DEEP.substring(0, 203) + " && echo gone; "
        // an fsync after the long-path file (written through, never fsynced) went away
        + "echo z > z && sync z && echo synced");
  }
}
