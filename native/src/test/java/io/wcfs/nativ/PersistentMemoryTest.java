package io.wcfs.nativ;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class PersistentMemoryTest {
  @TempDir Path tmp;

  private Path cacheFile(long size) throws IOException {
    Path f = tmp.resolve("c" + System.nanoTime());
    CacheFiles.create(f, size, 4096);
    return f;
  }

  @DisplayName("copy, assign, flush, commit reach the file, with libpmem and with the fallback")
  @ParameterizedTest(name = "fallback={0}")
  @ValueSource(booleans = {false, true})
  void roundTrip(boolean fallback) throws IOException {
    Path f = cacheFile(1 << 20);
    byte[] data = new byte[8192];
    new Random(1).nextBytes(data);
    try (PersistentMemory pm = PersistentMemory.map(f, FlushStrategy.AUTO, fallback);
        NativeBuffer src = new NativeBuffer(data.length)) {
      assertEquals(fallback || !LibPmem.isAvailable() ? PersistentMemory.Backend.FALLBACK
          : PersistentMemory.Backend.LIBPMEM, pm.backend());
      // /tmp is not pmem (PMEM_IS_PMEM_FORCE unset in the tests): auto means msync.
      assertEquals(FlushStrategy.MSYNC, pm.strategy());
      assertTrue(pm.describe().contains(fallback ? "fallback" : "libpmem"), pm.describe());
      src.put(0, data, 0, data.length);
      pm.memcpy(4096, src.address(), data.length);
      pm.assign(16, 0x1122334455667788L);
      pm.flush(0, 4096 + data.length);
      pm.commit();
      assertEquals(0x1122334455667788L, pm.readLong(16));
      byte[] back = new byte[data.length];
      pm.read(4096, back, 0, back.length);
      assertArrayEquals(data, back);
    }
    byte[] onDisk = Files.readAllBytes(f);
    assertEquals(0x1122334455667788L,
        ByteBuffer.wrap(onDisk).order(ByteOrder.LITTLE_ENDIAN).getLong(16));
    assertArrayEquals(data, java.util.Arrays.copyOfRange(onDisk, 4096, 4096 + data.length));
  }

  @Test
  @DisplayName("eager or late on a mapping that is not pmem is refused with the fix")
  void nonTemporalNeedsPmem() throws IOException {
    Path f = cacheFile(1 << 20);
    for (FlushStrategy s : new FlushStrategy[] {FlushStrategy.EAGER, FlushStrategy.LATE}) {
      IOException e = assertThrows(IOException.class, () -> PersistentMemory.map(f, s, true));
      assertTrue(e.getMessage().contains("use --flush-strategy msync"), e.getMessage());
    }
  }

  @Test
  @DisplayName("auto picks what the seed thread measured")
  void autoChoice() {
    assertEquals(FlushStrategy.EAGER, FlushStrategy.autoFor(true, "amd64"));
    assertEquals(FlushStrategy.LATE, FlushStrategy.autoFor(true, "aarch64"));
    assertEquals(FlushStrategy.MSYNC, FlushStrategy.autoFor(false, "amd64"));
    assertThrows(IllegalArgumentException.class, () -> FlushStrategy.parse("fast"));
  }

  @Test
  @DisplayName("cache files: preallocated, mode 0600, too small and too large refused")
  void createCacheFile() throws IOException {
    Path f = tmp.resolve("cache");
    CacheFiles.create(f, 8 << 20, 4096);
    assertEquals(8 << 20, Files.size(f));
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
    Process stat = new ProcessBuilder("stat", "-c", "%b", f.toString()).start();
    long allocated = Long.parseLong(new String(stat.getInputStream().readAllBytes()).trim())
        * 512L;
    assertTrue(allocated >= 8 << 20, "preallocated, not sparse: " + allocated);
    IOException small = assertThrows(IOException.class,
        () -> CacheFiles.create(tmp.resolve("small"), 100, 4096));
    assertTrue(small.getMessage().contains("too small"), small.getMessage());
    IOException big = assertThrows(IOException.class,
        () -> CacheFiles.create(tmp.resolve("big"), Long.MAX_VALUE / 2, 4096));
    assertTrue(big.getMessage().contains("larger than the free space"), big.getMessage());
    assertFalse(Files.exists(tmp.resolve("small")) || Files.exists(tmp.resolve("big")));
  }

  @Test
  @DisplayName("pmem_assign refuses unaligned offsets; ranges are bounds-checked")
  void checks() throws IOException {
    try (PersistentMemory pm = PersistentMemory.map(cacheFile(1 << 16), FlushStrategy.MSYNC,
        true)) {
      assertThrows(IllegalArgumentException.class, () -> pm.assign(3, 1));
      assertThrows(IndexOutOfBoundsException.class, () -> pm.readLong(1 << 16));
    }
  }
}
