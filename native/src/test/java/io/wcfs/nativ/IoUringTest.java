package io.wcfs.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import org.junit.jupiter.api.Test;

class IoUringTest {
  private static final com.kenai.jffi.MemoryIO IO = com.kenai.jffi.MemoryIO.getInstance();

  /** A NOP (opcode 0) goes round the ring: SQ tail published, CQE read back with its tag. */
  @Test
  void nopRoundTrip() throws Exception {
    try (IoUring ring = IoUring.create(4, IoUring.SETUP_SQE128 | IoUring.SETUP_SINGLE_ISSUER
        | IoUring.SETUP_DEFER_TASKRUN)) {
      for (int round = 0; round < 10; round++) {
        long sqe = ring.nextSqe();
        assertNotEquals(0, sqe);
        IO.putByte(sqe + IoUring.SQE_OPCODE, (byte) 0);
        IO.putLong(sqe + IoUring.SQE_USER_DATA, 1000 + round);
        assertEquals(0, ring.enter(1));
        long cqe = ring.peekCqe();
        assertNotEquals(0, cqe);
        assertEquals(1000 + round, IoUring.cqeUserData(cqe));
        assertEquals(0, IoUring.cqeRes(cqe));
        ring.cqeSeen();
        assertEquals(0, ring.peekCqe());
      }
    }
  }
}
