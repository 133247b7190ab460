package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.nativ.LibC;
import io.wcfs.nativ.Xattr;
import io.wcfs.nativ.NativeIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Extended attributes through a real mount: passed to the backing node with its errno, kept by
 * the tools that copy them, removed with the file capability on write, truncate and chown, and
 * without a getxattr per write (kill-priv v2). Each test mounts its own wcfs so that it can
 * unmount and look at the backing directory, or mount with other options.
 */
@Timeout(300)
class XattrTest {
  private static final int AT_FDCWD = LibC.AT_FDCWD;
  private static final int XATTR_CREATE = 1;
  private static final int XATTR_REPLACE = 2;
  private static final int EPERM = 1;
  private static final int EEXIST = 17;

  Path tmp;
  Path backing;
  Path mnt;
  Path reference;
  WcfsProcess wcfs;

  @BeforeEach
  void setUp() throws Exception {
    tmp = Files.createTempDirectory("wcfs-XattrTest");
    backing = Files.createDirectories(tmp.resolve("backing"));
    mnt = Files.createDirectories(tmp.resolve("mnt"));
    reference = Files.createDirectories(tmp.resolve("reference"));
    wcfs = new WcfsProcess(WcfsProcess.tmpfsCacheDir("xattr"), backing, mnt);
  }

  @AfterEach
  void tearDown() throws Exception {
    try {
      wcfs.close();
    } finally {
      WcfsProcess.deleteTree(wcfs.cacheDir);
      WcfsProcess.deleteTree(tmp);
    }
  }

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static String abs(Path p) {
    return p.toAbsolutePath().toString();
  }

  /** The same sequence of xattr calls on a tree, as "call -> result" lines. */
  private static List<String> script(Path top) throws Exception {
    List<String> out = new ArrayList<>();
    Files.writeString(top.resolve("f"), "data");
    Files.createDirectories(top.resolve("d"));
    Files.createSymbolicLink(top.resolve("l"), Path.of("f"));
    String f = abs(top.resolve("f"));
    String d = abs(top.resolve("d"));
    String l = abs(top.resolve("l"));
    byte[] big = new byte[3000];
    for (int i = 0; i < big.length; i++) {
      big[i] = (byte) i;
    }
    out.add("get missing " + Xattr.getxattrAt(AT_FDCWD, f, "user.a", 0, 0));
    out.add("set " + set(f, "user.a", bytes("one"), 0));
    out.add("set create existing " + set(f, "user.a", bytes("two"), XATTR_CREATE));
    out.add("set replace missing " + set(f, "user.b", bytes("two"), XATTR_REPLACE));
    out.add("set replace " + set(f, "user.a", bytes("three"), XATTR_REPLACE));
    out.add("set big " + set(f, "user.big", big, 0));
    out.add("set empty " + set(f, "user.empty", new byte[0], 0));
    out.add("size probe " + Xattr.getxattrAt(AT_FDCWD, f, "user.big", 0, 0));
    out.add("value " + new String(Xattr.getxattrAt(AT_FDCWD, f, "user.a"),
        StandardCharsets.UTF_8));
    out.add("big intact " + java.util.Arrays.equals(big, Xattr.getxattrAt(AT_FDCWD, f,
        "user.big")));
    out.add("list " + new java.util.TreeSet<>(Xattr.listxattrAt(AT_FDCWD, f)));
    out.add("remove " + Xattr.removexattrAt(AT_FDCWD, f, "user.a"));
    out.add("remove again " + Xattr.removexattrAt(AT_FDCWD, f, "user.a"));
    out.add("dir set " + set(d, "user.dir", bytes("d"), 0));
    out.add("dir list " + Xattr.listxattrAt(AT_FDCWD, d));
    out.add("symlink user " + set(l, "user.x", bytes("x"), 0)); // the kernel refuses: EPERM
    out.add("symlink trusted " + set(l, "trusted.wcfs", bytes("link"), 0));
    out.add("target has it " + (Xattr.getxattrAt(AT_FDCWD, f, "trusted.wcfs") != null));
    out.add("unknown namespace " + set(f, "bogus.x", bytes("x"), 0));
    out.add("missing file " + Xattr.getxattrAt(AT_FDCWD, abs(top.resolve("nope")), "user.a", 0,
        0));
    return out;
  }

  private static int set(String path, String name, byte[] value, int flags) {
    try {
      Xattr.setxattrAt(AT_FDCWD, path, name, value, flags);
      return 0;
    } catch (NativeIOException e) {
      return -e.errno();
    }
  }

  @Test
  @DisplayName("get, set, list, remove: the same results and errnos as a plain directory, and"
      + " the attributes are in the backing files after unmount")
  void sameAsPlainDirectory() throws Exception {
    wcfs.mount();
    List<String> expected = script(reference);
    List<String> got = script(mnt);
    assertEquals(expected, got);
    assertTrue(expected.contains("set create existing -" + EEXIST), expected.toString());
    assertTrue(expected.contains("symlink user -" + EPERM), expected.toString());
    wcfs.umount();
    assertEquals(attributes(reference), attributes(backing));
    assertArrayEquals(bytes("link"), Xattr.getxattrAt(AT_FDCWD, abs(backing.resolve("l")),
        "trusted.wcfs"));
  }

  /** Every file's and directory's xattrs below {@code top}, keyed by relative path. */
  private static Map<String, Map<String, String>> attributes(Path top) throws Exception {
    Map<String, Map<String, String>> all = new TreeMap<>();
    try (var s = Files.walk(top)) {
      for (Path p : s.toList()) {
        if (top.relativize(p).startsWith(BackingClaim.DIR)) {
          continue; // BACKING/.wcfs is wcfs's own (the claim), as the mount does not show it
        }
        Map<String, String> m = new TreeMap<>();
        for (String name : Xattr.listxattrAt(AT_FDCWD, abs(p))) {
          byte[] v = Xattr.getxattrAt(AT_FDCWD, abs(p), name);
          m.put(name, v == null ? null : java.util.HexFormat.of().formatHex(v));
        }
        all.put(top.relativize(p).toString(), m);
      }
    }
    return all;
  }

  @Test
  @DisplayName("a path near PATH_MAX below the mount: backing root + path exceed PATH_MAX")
  void longPath() throws Exception {
    wcfs.mount();
    int mfd = LibC.openat(AT_FDCWD, abs(mnt), LibC.O_PATH | LibC.O_DIRECTORY, 0);
    StringBuilder rel = new StringBuilder();
    try {
      while (rel.length() < 3800) {
        rel.append("d".repeat(200));
        assertEquals(0, LibC.mkdirat(mfd, rel.toString(), 0755));
        rel.append('/');
      }
      String path = rel + "f".repeat(250); // 4069 bytes in all
      LibC.close(LibC.openat(mfd, path, LibC.O_CREAT | LibC.O_WRONLY, 0644));
      assertTrue(abs(backing).length() + 1 + path.length() > 4096);
      // relative to a descriptor of the mount: the path alone is within PATH_MAX
      Xattr.setxattrAt(mfd, path, "user.deep", bytes("v"), 0);
      assertArrayEquals(bytes("v"), Xattr.getxattrAt(mfd, path, "user.deep"));
      assertEquals(List.of("user.deep"), Xattr.listxattrAt(mfd, path));
      assertEquals(0, Xattr.removexattrAt(mfd, path, "user.deep"));
      assertNull(Xattr.getxattrAt(mfd, path, "user.deep"));
    } finally {
      // deeper than the JDK's walks reach (tearDown's would fail, and leave it in /tmp):
      // removed relative to the mount, whatever the test got to
      LibC.unlinkat(mfd, rel + "f".repeat(250), 0);
      for (String d = rel.length() == 0 ? "" : rel.substring(0, rel.length() - 1);
          !d.isEmpty(); d = d.contains("/") ? d.substring(0, d.lastIndexOf('/')) : "") {
        LibC.unlinkat(mfd, d, LibC.AT_REMOVEDIR);
      }
      LibC.close(mfd);
    }
  }

  private static String run(Path dir, String script) throws Exception {
    Process p = new ProcessBuilder("sh", "-c", script).directory(dir.toFile())
        .redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "did not finish: " + script);
    assertEquals(0, p.exitValue(), script + "\n" + out);
    return out;
  }

  @Test
  @DisplayName("rsync -aX, cp --preserve=xattr and tar --xattrs into the mount keep the"
      + " attributes, in the mount and in the backing files after unmount")
  void copyToolsKeepThem() throws Exception {
    Path src = Files.createDirectories(reference.resolve("src/sub"));
    Files.writeString(src.resolve("a"), "alpha");
    Files.writeString(src.getParent().resolve("b"), "beta");
    Xattr.setxattrAt(AT_FDCWD, abs(src.resolve("a")), "user.color", bytes("red"), 0);
    Xattr.setxattrAt(AT_FDCWD, abs(src.getParent().resolve("b")), "user.n", bytes("1"), 0);
    Xattr.setxattrAt(AT_FDCWD, abs(src), "user.dir", bytes("yes"), 0);
    Xattr.setxattrAt(AT_FDCWD, abs(src.getParent().resolve("b")), "trusted.t", bytes("t"), 0);
    Map<String, Map<String, String>> want = attributes(reference.resolve("src"));
    wcfs.mount();
    run(tmp, "rsync -aX reference/src/ mnt/rsync/");
    run(tmp, "cp -r --preserve=xattr reference/src mnt/cp");
    run(tmp, "mkdir mnt/tar && tar --xattrs --xattrs-include='*' -C reference/src -cf - ."
        + " | tar --xattrs --xattrs-include='*' -C mnt/tar -xf -");
    for (String copy : List.of("rsync", "cp", "tar")) {
      assertEquals(want, attributes(mnt.resolve(copy)), copy + " into the mount");
    }
    wcfs.umount();
    assertEquals(want, attributes(backing.resolve("rsync")), "rsync, in the backing directory");
  }

  /** A version-2 vfs_cap_data granting cap_net_raw (bit 13), permitted and effective. */
  private static byte[] capability() {
    ByteBuffer b = ByteBuffer.allocate(20).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    b.putInt(0x02000000 | 1); // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    b.putInt(1 << 13).putInt(0); // permitted, inheritable (low word)
    b.putInt(0).putInt(0); // high words
    return b.array();
  }

  private byte[] capabilityOf(Path p) throws Exception {
    return Xattr.getxattrAt(AT_FDCWD, abs(p), "security.capability");
  }

  @Test
  @DisplayName("security.capability is removed by a write, a truncate and a chown through the"
      + " mount, also when set through another name of a file held open; chmod and reads keep"
      + " it")
  void capabilityRemovedOnChange() throws Exception {
    wcfs.mount();
    Path f = mnt.resolve("prog");
    Files.write(f, new byte[8192]);
    String[] changes = {"echo x >> prog", "truncate -s 100 prog", "chown 65534 prog"};
    for (String change : changes) {
      Xattr.setxattrAt(AT_FDCWD, abs(f), "security.capability", capability(), 0);
      run(mnt, "chmod 0755 prog; cat prog > /dev/null"); // neither removes it
      assertArrayEquals(capability(), capabilityOf(f), "kept by chmod and read, before "
          + change);
      run(mnt, change);
      assertNull(capabilityOf(f), change + " through the mount");
      assertNull(capabilityOf(backing.resolve("prog")), change + ", in the backing file");
    }
    // Set through another name while the writer holds the file open: the kernel's inode of
    // the name written through (one per name with libfuse2) was already marked as having
    // nothing to remove, so the kernel does not ask; the daemon must remove it itself.
    Files.createLink(mnt.resolve("other-name"), f);
    long cleared = wcfs.statusNumber("capabilities_cleared");
    try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.wrap(bytes("before")), 0);
      Xattr.setxattrAt(AT_FDCWD, abs(mnt.resolve("other-name")), "security.capability",
          capability(), 0);
      ch.write(ByteBuffer.wrap(bytes("after")), 10);
    }
    assertTrue(wcfs.statusNumber("capabilities_cleared") > cleared, "not removed by the daemon");
    assertNull(capabilityOf(backing.resolve("prog")), "write through an open descriptor of another name");
  }

  /** getxattr_requests, capability_probes and ..._from_memory of the mount now (one status). */
  private long[] counts() throws Exception {
    String out = WcfsProcess.run(30, "status", "--json", abs(mnt)).out();
    long[] c = new long[3];
    String[] fields = {"getxattr_requests", "capability_probes", "capability_probes_from_memory"};
    for (int i = 0; i < 3; i++) {
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"" + fields[i]
          + "\": (\\d+)").matcher(out);
      assertTrue(m.find(), "no " + fields[i] + " in " + out);
      c[i] = Long.parseLong(m.group(1));
    }
    return c;
  }

  /** 200 x (4 KiB write + fsync) on one file; returns the GETXATTR requests they caused. */
  private long getxattrsPerWrites() throws Exception {
    long before = counts()[0];
    try (FileChannel ch = FileChannel.open(mnt.resolve("w.dat"), StandardOpenOption.CREATE,
        StandardOpenOption.WRITE)) {
      ByteBuffer b = ByteBuffer.allocate(4096);
      for (int i = 0; i < 200; i++) {
        b.clear();
        ch.write(b, (i % 64) * 4096L);
        ch.force(false);
      }
    }
    return counts()[0] - before;
  }

  @Test
  @DisplayName("with xattrs answered, GETXATTR requests stay flat: not one per write (kill-priv"
      + " v2), and a few per SQLite transaction, mostly answered from memory")
  void getxattrRequestsStayFlat() throws Exception {
    wcfs.mount();
    assertEquals("on", statusText("kill_priv_v2"));
    long perWrites = getxattrsPerWrites();
    assertTrue(perWrites <= 2, "200 write+fsync caused " + perWrites + " GETXATTR requests");

    run(mnt, "sqlite3 db 'create table t(x)'");
    for (String mode : List.of("delete", "wal")) {
      long[] before = counts();
      StringBuilder sql = new StringBuilder("pragma journal_mode=" + mode
          + "; pragma synchronous=full;\n");
      for (int i = 0; i < 100; i++) {
        sql.append("begin; insert into t values(randomblob(300)); commit;\n");
      }
      Files.writeString(tmp.resolve("tx.sql"), sql);
      run(mnt, "sqlite3 db < " + tmp.resolve("tx.sql") + " > /dev/null");
      long[] after = counts();
      double perTx = (after[0] - before[0]) / 100.0;
      long probes = after[1] - before[1];
      long fromMemory = after[2] - before[2];
      System.out.printf("SQLite %s: %.2f GETXATTR per transaction, %d capability probes, %d"
          + " answered from memory%n", mode, perTx, probes, fromMemory);
      assertTrue(perTx <= 5, mode + ": " + perTx + " GETXATTR per transaction");
      // rollback journal: the journal is a new file each transaction, its first probe goes to
      // the backing file; WAL: the same files throughout, nearly all from memory
      assertTrue(fromMemory >= probes / 2, mode + ": only " + fromMemory + " of " + probes
          + " probes answered from memory");
    }
  }

  @Test
  @DisplayName("the measurement itself: without kill-priv v2 the kernel asks before every write")
  void withoutKillPrivEveryWriteAsks() throws Exception {
    wcfs.env.put("WCFS_NO_KILLPRIV", "1");
    wcfs.mount();
    assertEquals("off", statusText("kill_priv_v2"));
    long perWrites = getxattrsPerWrites();
    assertTrue(perWrites >= 200, "200 write+fsync caused only " + perWrites + " GETXATTR");
    long[] c = counts();
    assertTrue(c[2] >= c[1] - 2, "probes " + c[1] + ", from memory " + c[2]);
  }

  @Test
  @DisplayName("-o noxattr: ENOTSUP to callers, and the kernel stops asking")
  void noXattrOption() throws Exception {
    wcfs.mount("-o", "noxattr");
    // First a file only the journal holds yet (the kernel stops asking after one ENOSYS): it
    // used to answer ENODATA, so the kernel kept probing security.capability before writes.
    Files.writeString(mnt.resolve("new"), "x");
    assertEquals(-Xattr.ENOTSUP, (int) Xattr.getxattrAt(AT_FDCWD, abs(mnt.resolve("new")),
        "user.a", 0, 0));
    Files.writeString(mnt.resolve("f"), "x");
    assertEquals(-Xattr.ENOTSUP, set(abs(mnt.resolve("f")), "user.a", bytes("1"), 0));
    assertEquals(-Xattr.ENOTSUP, (int) Xattr.getxattrAt(AT_FDCWD, abs(mnt.resolve("f")),
        "user.a", 0, 0));
    long before = counts()[0];
    getxattrsPerWrites();
    assertEquals(before, counts()[0]);
    assertEquals("off (-o noxattr)", statusText("xattrs"));
  }

  private String statusText(String field) throws Exception {
    WcfsProcess.Result r = WcfsProcess.run(30, "status", "--json", abs(mnt));
    java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"" + field
        + "\": \"([^\"]*)\"").matcher(r.out());
    assertTrue(m.find(), "no " + field + " in " + r.out());
    return m.group(1);
  }
}
