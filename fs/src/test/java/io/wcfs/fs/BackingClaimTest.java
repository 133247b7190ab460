package io.wcfs.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The claim of a backing directory, in-process on a local directory: two claims in one JVM are
 * two open file descriptions, whose OFD locks conflict exactly as two machines' do on a
 * filesystem whose locks span its clients. The lease and the fencing of a holder that was cut
 * off are driven with short leases and a simulated partition.
 */
@Timeout(60)
class BackingClaimTest {
  @TempDir Path tmp;
  private final List<BackingClaim> claims = new ArrayList<>();

  private BackingClaim claim(Path backing, String cache, String mountpoint, boolean takeOver,
      List<String> said) throws IOException {
    BackingClaim.Options o = new BackingClaim.Options();
    o.leaseMs = 1000;
    o.takeOver = takeOver;
    o.say = said == null ? s -> { } : said::add;
    BackingClaim c = BackingClaim.acquire(backing.toRealPath(), tmp.resolve(cache),
        tmp.resolve(mountpoint), o);
    claims.add(c);
    return c;
  }

  @org.junit.jupiter.api.AfterEach
  void releaseAll() {
    claims.forEach(BackingClaim::close);
  }

  private Path dir(String name) throws IOException {
    return Files.createDirectories(tmp.resolve(name)).toRealPath();
  }

  @Test
  @DisplayName("a second cache is refused with one sentence naming the holder; after a clean"
      + " release it may claim the directory")
  void secondCacheRefused() throws Exception {
    Path b = dir("b");
    BackingClaim a = claim(b, "cacheA", "mA", false, null);
    UsageException e = assertThrows(UsageException.class,
        () -> claim(b, "cacheB", "mB", false, null));
    String host = BackingClaim.hostName();
    assertTrue(e.getMessage().startsWith("backing directory " + b + " is claimed by the wcfs"
        + " mount at " + tmp.resolve("mA") + " on host " + host + " (cache "
        + tmp.resolve("cacheA") + ", pid " + ProcessHandle.current().pid() + ", since "),
        e.getMessage());
    assertTrue(e.getMessage().contains("wcfs umount " + tmp.resolve("mA")), e.getMessage());
    // --take-over does not break a live holder's lock
    UsageException t = assertThrows(UsageException.class,
        () -> claim(b, "cacheB", "mB", true, null));
    assertTrue(t.getMessage().contains("--take-over does not apply"), t.getMessage());

    a.release(true);
    BackingClaim b2 = claim(b, "cacheB", "mB", false, null);
    assertEquals(2, b2.generation(), "generation bumped by the new holder");
    b2.checkMayWrite();
  }

  @Test
  @DisplayName("this cache takes back the claim its own killed daemon left, without --take-over")
  void sameCacheTakesBack() throws Exception {
    Path b = dir("b");
    BackingClaim a = claim(b, "cacheA", "mA", false, null);
    a.close(); // as kill -9: the lock goes, the record still says held
    BackingClaim again = claim(b, "cacheA", "mA", false, null);
    assertEquals(2, again.generation());
    again.checkMayWrite();
  }

  @Test
  @DisplayName("a claim left held by another cache needs --take-over, which waits out the lease"
      + " and fences the old holder: once cut off it stops, and it never writes again")
  void takeOverFencesTheOldHolder() throws Exception {
    Path b = dir("b");
    BackingClaim a = claim(b, "cacheA", "mA", false, null);
    a.checkMayWrite();
    a.partitionForTest(true); // the server dropped A's lock; A runs on, its renewals fail
    a.checkMayWrite(); // within its lease it may still write
    Thread.sleep(1100); // three quarters of the 1 s lease have passed without a renewal
    IOException stale = assertThrows(IOException.class, a::checkMayWrite);
    assertTrue(stale.getMessage().contains("was last renewed"), stale.getMessage());

    UsageException e = assertThrows(UsageException.class,
        () -> claim(b, "cacheB", "mB", false, null));
    assertTrue(e.getMessage().contains("stopped without releasing it")
        && e.getMessage().contains("--take-over") && e.getMessage().contains("cacheA"),
        e.getMessage());

    List<String> said = new ArrayList<>();
    long start = System.nanoTime();
    BackingClaim taker = claim(b, "cacheB", "mB", true, said);
    long waitedMs = (System.nanoTime() - start) / 1_000_000;
    assertTrue(waitedMs >= 1000 + BackingClaim.TAKE_OVER_MARGIN_MS,
        "waited out the old lease: " + waitedMs + " ms");
    assertEquals(1, said.size(), "one message for the person mounting: " + said);
    assertTrue(said.get(0).contains("whatever that cache had not written back is lost"),
        said.get(0));
    taker.checkMayWrite();

    a.partitionForTest(false); // A comes back
    a.renew();
    IOException lost = assertThrows(IOException.class, a::checkMayWrite);
    assertTrue(lost.getMessage().contains("lost its claim") && lost.getMessage().contains(
        "taken over by the wcfs mount at " + tmp.resolve("mB")), lost.getMessage());
    assertTrue(a.lostReason() != null);
    a.release(true); // must not mark the taker's claim released
    assertThrows(UsageException.class, () -> claim(b, "cacheC", "mC", false, null),
        "the taker still holds it");
    taker.checkMayWrite();
  }

  @Test
  @DisplayName("a cache whose data a take-over gave up is refused, even after the taker"
      + " released the directory")
  void givenUpDataIsNotWrittenBack() throws Exception {
    Path b = dir("b");
    claim(b, "cacheA", "mA", false, null).close(); // A dies with data in its cache
    claim(b, "cacheB", "mB", true, null).release(true); // B takes over, later hands over
    BackingClaim.Options o = new BackingClaim.Options();
    o.cacheHoldsData = () -> true;
    UsageException e = assertThrows(UsageException.class, () -> BackingClaim.acquire(b,
        tmp.resolve("cacheA"), tmp.resolve("mA"), o));
    assertTrue(e.getMessage().contains("was given up by a take-over")
        && e.getMessage().contains("wcfs format --force"), e.getMessage());
    o.cacheHoldsData = () -> false; // written back or formatted: welcome
    claims.add(BackingClaim.acquire(b, tmp.resolve("cacheA"), tmp.resolve("mA"), o));
  }

  @Test
  @DisplayName("a holder renews its lease: it may write for long after the lease's length")
  void renewalKeepsTheLease() throws Exception {
    Path b = dir("b");
    BackingClaim a = claim(b, "cacheA", "mA", false, null);
    Thread.sleep(2500);
    a.checkMayWrite();
    assertTrue(a.status().contains("generation 1"), a.status());
  }

  @Test
  @DisplayName("a claim file removed behind wcfs's back is made again by its holder")
  void removedClaimFileIsRecreated() throws Exception {
    Path b = dir("b");
    BackingClaim a = claim(b, "cacheA", "mA", false, null);
    Files.delete(b.resolve(".wcfs/claim"));
    a.renew();
    a.checkMayWrite();
    assertThrows(UsageException.class, () -> claim(b, "cacheB", "mB", false, null));
  }

  @Test
  @DisplayName("a backing directory inside or above a claimed one is refused")
  void nestedRefused() throws Exception {
    Path outer = dir("outer");
    Path inner = dir("outer/x/inner");
    Path deeper = dir("outer/x/inner/y");
    BackingClaim a = claim(inner, "cacheA", "mA", false, null);
    UsageException below = assertThrows(UsageException.class,
        () -> claim(deeper, "cacheB", "mB", false, null));
    assertTrue(below.getMessage().contains("is inside " + inner)
        && below.getMessage().contains("is claimed by the wcfs mount at"), below.getMessage());
    UsageException above = assertThrows(UsageException.class,
        () -> claim(outer, "cacheB", "mB", false, null));
    assertTrue(above.getMessage().contains("holds " + inner), above.getMessage());

    a.close(); // stopped without releasing: still refused, that cache may hold data for it
    UsageException unreleased = assertThrows(UsageException.class,
        () -> claim(outer, "cacheB", "mB", false, null));
    assertTrue(unreleased.getMessage().contains("never released"), unreleased.getMessage());

    claim(inner, "cacheA", "mA", false, null).release(true);
    claim(outer, "cacheB", "mB", false, null).release(true); // released: nothing nested now
    claim(deeper, "cacheC", "mC", false, null);
  }

  @Test
  @DisplayName("which filesystems' locks keep other machines out")
  void filesystemLocking() {
    assertEquals(BackingFilesystem.Locking.SHARED, fs("fuse.glusterfs", "rw").locking());
    assertEquals(BackingFilesystem.Locking.SHARED,
        fs("nfs4", "rw,vers=4.2,local_lock=none").locking());
    assertEquals(BackingFilesystem.Locking.NONE, fs("nfs", "rw,nolock,local_lock=all")
        .locking());
    assertEquals(BackingFilesystem.Locking.NONE, fs("cifs", "rw,nobrl").locking());
    assertEquals(BackingFilesystem.Locking.LOCAL, fs("ext4", "rw").locking());
    assertEquals(BackingFilesystem.Locking.LOCAL, fs("tmpfs", "rw").locking());
    BackingFilesystem sshfs = fs("fuse.sshfs", "rw,user_id=0");
    assertEquals(BackingFilesystem.Locking.NONE, sshfs.locking());
    String m = sshfs.noLocksMessage(Path.of("/s/db"));
    assertTrue(m.contains("fuse.sshfs") && m.contains("--single-machine")
        && m.contains("do not reach other machines"), m);
    assertEquals(BackingFilesystem.Locking.NONE, fs("fuse.somethingelse", "rw").locking());
  }

  @Test
  @DisplayName("a torn or empty claim record reads as none; a whole one round-trips")
  void recordParsing() {
    BackingClaim.Record r = new BackingClaim.Record(7, "held", "h", "boot", "/c/wcfs.cache", 12,
        "/mnt/a", "/b", "2026-11-30T00:00:00Z", "2026-11-30T00:00:10Z", 30000);
    assertEquals(r, BackingClaim.Record.parse(r.text() + "\n\n\n"));
    assertNull(BackingClaim.Record.parse(r.text().substring(0, 60)));
    assertNull(BackingClaim.Record.parse(""));
  }

  private static BackingFilesystem fs(String type, String opts) {
    return new BackingFilesystem(type, Path.of("/mnt/x"), opts);
  }
}
