package io.wcfs.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** The lost+found name a file keeps its slot under must fit a file version, in bytes. */
class LostAndFoundPathTest {
  private static int bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }

  @Test
  @DisplayName("long names in two- and three-byte characters are cut to fit a file version")
  void fitsAFileVersion() {
    // Cut by characters (160), these were 300+ bytes: storing the slot's version refused them,
    // which latched the cache's sticky error.
    for (String name : new String[] {"д".repeat(190), "データ".repeat(70), "a".repeat(400)}) {
      String p = LostAndFound.path("dir/" + name, 123_456, 9_876_543_210L);
      assertTrue(bytes(p) <= CacheLayout.MAX_PATH_BYTES, bytes(p) + " bytes: " + p);
      assertTrue(CacheLayout.pathFits(p));
      assertTrue(p.endsWith(name.substring(name.length() - 10) + ".slot123456-seq9876543210"),
          "keeps the end of the original name and the slot and seq: " + p);
      assertEquals(-1, p.indexOf('\uFFFD'), "cut at a character boundary: " + p);
    }
    String shortOne = LostAndFound.path("d/e", 1, 2);
    assertEquals(WriteCache.LOST_AND_FOUND + "/d#e.slot1-seq2", shortOne);
  }
}
