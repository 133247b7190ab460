package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.wcfs.core.CacheLayout;
import io.wcfs.core.CacheMemory;
import io.wcfs.core.DirectoryBackingStore;
import io.wcfs.core.PmemCacheMemory;
import io.wcfs.nativ.CacheFiles;
import io.wcfs.nativ.FlushStrategy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every mistake gets one clear sentence, a non-zero exit, and changes nothing. */
@Timeout(300)
class BadInputTest {
  @TempDir Path tmp;
  Path cacheDir;
  Path backing;
  Path mnt;

  @BeforeEach
  void setUp() throws Exception {
    cacheDir = WcfsProcess.tmpfsCacheDir("bad");
    backing = Files.createDirectories(tmp.resolve("backing"));
    mnt = Files.createDirectories(tmp.resolve("mnt"));
    Files.writeString(backing.resolve("keep"), "user data");
  }

  @AfterEach
  void tearDown() throws Exception {
    WcfsProcess.deleteTree(cacheDir);
  }

  static Stream<Arguments> mountMistakes() {
    return Stream.of(
        Arguments.of("missing backing", List.of("{cache}", "{tmp}/nope", "{mnt}"), "does not exist"),
        Arguments.of("backing is a file", List.of("{cache}", "{backing}/keep", "{mnt}"),
            "is not a directory"),
        Arguments.of("missing mount point", List.of("{cache}", "{backing}", "{tmp}/nope"),
            "does not exist"),
        Arguments.of("mount point inside backing", List.of("{cache}", "{backing}", "{backing}/sub"),
            "inside backing directory"),
        // (mount point = backing directory is a mount in place: MountInPlaceTest)
        Arguments.of("cache inside backing mounted in place", List.of("{backing}/sub",
            "{backing}", "{backing}"), "keep the cache outside"),
        Arguments.of("backing inside mount point", List.of("{cache}", "{mnt}/sub", "{mnt}"),
            "inside mount point"),
        Arguments.of("cache inside backing", List.of("{backing}/sub", "{backing}", "{mnt}"),
            "keep the cache outside"),
        Arguments.of("high below low", List.of("--high-watermark", "10", "--low-watermark", "20",
            "{cache}", "{backing}", "{mnt}"), "below low watermark"),
        Arguments.of("block size not a power of two", List.of("--block-size", "3000", "{cache}",
            "{backing}", "{mnt}"), "power of two"),
        Arguments.of("watermark out of range", List.of("--high-watermark", "150", "{cache}",
            "{backing}", "{mnt}"), "percentage"),
        Arguments.of("unknown flush strategy", List.of("--flush-strategy", "fast", "{cache}",
            "{backing}", "{mnt}"), "unknown flush strategy"),
        Arguments.of("cache too small", List.of("--cache-size", "1K", "{cache}", "{backing}",
            "{mnt}"), "too small"),
        Arguments.of("unreadable size", List.of("--cache-size", "lots", "{cache}", "{backing}",
            "{mnt}"), "cannot read size"),
        Arguments.of("missing cache directory", List.of("{tmp}/x/y", "{backing}", "{mnt}"),
            "does not exist"));
  }

  private List<String> expand(List<String> args) throws Exception {
    Files.createDirectories(backing.resolve("sub"));
    Files.createDirectories(mnt.resolve("sub"));
    List<String> out = new ArrayList<>();
    for (String a : args) {
      out.add(a.replace("{cache}", cacheDir.toString()).replace("{backing}", backing.toString())
          .replace("{mnt}", mnt.toString()).replace("{tmp}", tmp.toString()));
    }
    return out;
  }

  private void assertRefused(WcfsProcess.Result r, String expected) throws Exception {
    assertNotEquals(0, r.exitCode(), "exit code: " + r.all());
    assertTrue(r.err().contains(expected), "message mentions '" + expected + "': " + r.all());
    assertTrue(r.err().trim().startsWith("wcfs: "), "one clear line: " + r.err());
    assertEquals("user data", Files.readString(backing.resolve("keep")));
    assertTrue(!Mounts.isWcfs(mnt.toRealPath()), "nothing mounted");
  }

  @DisplayName("mount refuses")
  @ParameterizedTest(name = "{0}")
  @MethodSource("mountMistakes")
  void mountRefuses(String name, List<String> args, String expected) throws Exception {
    List<String> full = new ArrayList<>(List.of("mount"));
    full.addAll(expand(args));
    assertRefused(WcfsProcess.run(60, full.toArray(String[]::new)), expected);
    assertTrue(!Files.exists(cacheDir.resolve("wcfs.cache")), "no cache file created");
  }

  @Test
  @DisplayName("a file that is not a cache is refused and left byte for byte")
  void foreignFileUntouched() throws Exception {
    byte[] foreign = new byte[8 << 20];
    new java.util.Random(1).nextBytes(foreign);
    Path f = cacheDir.resolve("wcfs.cache");
    Files.write(f, foreign);
    WcfsProcess.Result r = WcfsProcess.run(60, "mount", cacheDir.toString(), backing.toString(),
        mnt.toString());
    assertRefused(r, "not a wcfs cache");
    assertArrayEquals(foreign, Files.readAllBytes(f));
    WcfsProcess.Result check = WcfsProcess.run(60, "check", cacheDir.toString());
    assertNotEquals(0, check.exitCode());
    assertTrue(check.out().contains("not a wcfs cache"), check.all());
  }

  /** A process that dies during format: its stores so far stay in the file, nothing after. */
  private static final class DyingMemory implements CacheMemory {
    private final CacheMemory inner;
    private int operationsLeft;

    DyingMemory(CacheMemory inner, int operations) {
      this.inner = inner;
      this.operationsLeft = operations;
    }

    private void tick() {
      if (operationsLeft-- == 0) {
        throw new IllegalStateException("killed during format");
      }
    }

    @Override
    public long size() {
      return inner.size();
    }

    @Override
    public void copyIn(long offset, long srcAddress, long length) throws IOException {
      tick();
      inner.copyIn(offset, srcAddress, length);
    }

    @Override
    public void assign(long offset, long value) throws IOException {
      tick();
      inner.assign(offset, value);
    }

    @Override
    public void flush(long offset, long length) throws IOException {
      tick();
      inner.flush(offset, length);
    }

    @Override
    public void commit() throws IOException {
      tick();
      inner.commit();
    }

    @Override
    public long readLong(long offset) throws IOException {
      return inner.readLong(offset);
    }

    @Override
    public void copyOut(long offset, long dstAddress, long length) throws IOException {
      inner.copyOut(offset, dstAddress, length);
    }

    @Override
    public String describe() {
      return inner.describe();
    }

    @Override
    public void close() throws IOException {
      inner.close();
    }
  }

  @Test
  @DisplayName("a cache whose format was cut short is formatted again by the next mount")
  void interruptedFormatIsFormattedAgain() throws Exception {
    Path f = cacheDir.resolve("wcfs.cache");
    CacheFiles.create(f, 8 << 20, CacheLayout.Geometry.minFileSize(4096));
    try (PmemCacheMemory mem = PmemCacheMemory.open(f, FlushStrategy.AUTO, false)) {
      DyingMemory dying = new DyingMemory(mem, 1000);
      assertThrows(IllegalStateException.class, () -> CacheLayout.format(dying, 4096,
          new DirectoryBackingStore(backing).identity()));
    }
    WcfsProcess.Result check = WcfsProcess.run(60, "check", cacheDir.toString());
    assertEquals(0, check.exitCode(), check.all());
    assertTrue(check.out().contains("interrupted"), check.all());
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing, mnt)) {
      w.mount();
      assertEquals("user data", Files.readString(mnt.resolve("keep")));
      Files.writeString(mnt.resolve("new"), "through the cache");
      assertEquals("through the cache", Files.readString(mnt.resolve("new")));
    }
    assertEquals("through the cache", Files.readString(backing.resolve("new")));
  }

  @Test
  @DisplayName("a cache of another backing directory is refused")
  void otherBackingRefused() throws Exception {
    Path other = Files.createDirectories(tmp.resolve("other"));
    WcfsProcess.Result f = WcfsProcess.run(60, "format", "--cache-size", "8M",
        cacheDir.toString(), other.toString());
    assertEquals(0, f.exitCode(), f.all());
    byte[] before = Files.readAllBytes(cacheDir.resolve("wcfs.cache"));
    WcfsProcess.Result r = WcfsProcess.run(60, "mount", cacheDir.toString(), backing.toString(),
        mnt.toString());
    assertRefused(r, "belongs to backing directory " + other.toRealPath());
    assertArrayEquals(before, Files.readAllBytes(cacheDir.resolve("wcfs.cache")));
  }

  @Test
  @DisplayName("an already mounted mount point, and a cache in use, are refused")
  void alreadyMountedAndLocked() throws Exception {
    Path mnt2 = Files.createDirectories(tmp.resolve("mnt2"));
    try (WcfsProcess w = new WcfsProcess(cacheDir, backing, mnt);
        WcfsProcess second = new WcfsProcess(cacheDir, backing, mnt2)) {
      w.mount();
      WcfsProcess.Result again = WcfsProcess.run(60, "mount", cacheDir.toString(),
          backing.toString(), mnt.toString());
      assertNotEquals(0, again.exitCode());
      assertTrue(again.err().contains("already mounted"), again.all());
      WcfsProcess.Result locked = WcfsProcess.run(60, "mount", cacheDir.toString(),
          backing.toString(), mnt2.toString());
      assertNotEquals(0, locked.exitCode());
      assertTrue(locked.err().contains("in use by the wcfs mount at " + mnt.toRealPath()),
          locked.all());
      if (Mounts.isWcfs(mnt2.toRealPath())) {
        second.markMounted(); // unmounted by close() even though the assertion below fails
      }
      assertTrue(!Mounts.isWcfs(mnt2.toRealPath()));
    }
  }

  @Test
  @DisplayName("umount, status and flush of something that is not a mount")
  void notAMount() throws Exception {
    for (String cmd : List.of("umount", "flush")) {
      WcfsProcess.Result r = WcfsProcess.run(60, cmd, mnt.toString());
      assertNotEquals(0, r.exitCode(), cmd);
      assertTrue(r.err().contains("is not a wcfs mount point"), r.all());
    }
  }
}
