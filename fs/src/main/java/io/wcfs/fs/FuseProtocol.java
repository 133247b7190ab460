package io.wcfs.fs;

/**
 * The parts of the kernel's FUSE wire format (include/uapi/linux/fuse.h) that wcfs reads or
 * patches itself instead of leaving them to libfuse2: opcodes, header sizes, flags and the
 * offsets of the fields touched. Values only; {@link FuseLoop} receives requests and answers
 * INIT, {@link FuseWorker} corrects requests and replies, {@link FuseUring} moves them over
 * io_uring.
 */
final class FuseProtocol {
  private FuseProtocol() {}

  static final int ENOENT = 2;
  static final int ENODEV = 19;
  static final int ENOSYS = 38;

  /** libfuse2's struct fuse_buf on LP64 ({size_t size; enum flags; void *mem; ...}). */
  static final int FUSE_BUF_SIZE = 40;
  static final int FUSE_BUF_MEM = 16;

  static final int IN_HEADER = 40; // struct fuse_in_header
  static final int OUT_HEADER = 16; // struct fuse_out_header
  static final int RW_IN = 40; // struct fuse_write_in and fuse_read_in (protocol >= 7.9)

  // FUSE over io_uring (fuse_uring_cmd_req, struct fuse_uring_req_header)
  static final int FUSE_IO_URING_CMD_REGISTER = 1;
  static final int FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2;
  /** sizeof(struct fuse_uring_req_header): in_out[128], op_in[128], ring_ent_in_out (32). */
  static final int REQ_HEADER = 288;
  /** Where the opcode's own header is in it. */
  static final int OP_IN = 128;
  /** ring_ent_in_out.commit_id. */
  static final int COMMIT_ID = 256 + 8;
  /** ring_ent_in_out.payload_sz: after in_out and op_in (128 each). */
  static final int URING_PAYLOAD_SZ = 256 + 16;

  // Opcodes (enum fuse_opcode)
  static final int FUSE_LOOKUP = 1;
  static final int FUSE_FORGET = 2;
  static final int FUSE_GETATTR = 3;
  static final int FUSE_SETATTR = 4;
  static final int FUSE_LINK = 13;
  static final int FUSE_READ = 15;
  static final int FUSE_WRITE = 16;
  static final int FUSE_FSYNC = 20;
  static final int FUSE_GETXATTR = 22;
  static final int FUSE_FLUSH = 25;
  static final int FUSE_INIT = 26;
  static final int FUSE_FSYNCDIR = 30;
  static final int FUSE_CREATE = 35;
  static final int FUSE_INTERRUPT = 36;
  static final int FUSE_BATCH_FORGET = 42;
  /** The opcodes by number, for status ("" where none is defined). */
  static final String[] OPCODE_NAMES = {"", "lookup", "forget", "getattr", "setattr",
      "readlink", "symlink", "", "mknod", "mkdir", "unlink", "rmdir", "rename", "link", "open",
      "read", "write", "statfs", "release", "", "fsync", "setxattr", "getxattr", "listxattr",
      "removexattr", "flush", "init", "opendir", "readdir", "releasedir", "fsyncdir", "getlk",
      "setlk", "setlkw", "access", "create", "interrupt", "bmap", "destroy", "ioctl", "poll",
      "notify_reply", "batch_forget", "fallocate", "readdirplus", "rename2", "lseek",
      "copy_file_range", "setupmapping", "removemapping", "syncfs", "tmpfile", "statx"};

  // INIT: what libfuse2 answers, and what we widen it to
  static final int COMPAT_22_INIT_OUT = 24; // what libfuse2 replies
  static final int INIT_OUT = 64; // struct fuse_init_out of protocol 7.23 and later
  static final int MAX_PAGES_MINOR = 28;
  static final int FUSE_MAX_PAGES = 1 << 22;
  /** Protocol 7.33 brought FUSE_HANDLE_KILLPRIV_V2 and the kill flags of WRITE and SETATTR. */
  static final int KILLPRIV_V2_MINOR = 33;
  static final int FUSE_HANDLE_KILLPRIV_V2 = 1 << 28;
  static final int FUSE_INIT_EXT = 1 << 30;
  /** FUSE_OVER_IO_URING is bit 41 of the 64-bit flags: bit 9 of flags2. */
  static final int FUSE_OVER_IO_URING_FLAGS2 = 1 << (41 - 32);
  /** The kernel's smallest ring payload buffer (FUSE_MIN_READ_BUFFER). */
  static final long FUSE_MIN_READ_BUFFER = 8192;

  // Request flags
  static final int FUSE_GETATTR_FH = 1; // fuse_getattr_in.getattr_flags
  static final int FUSE_WRITE_KILL_SUIDGID = 1 << 2; // fuse_write_in.write_flags
  static final int FATTR_ATIME = 1 << 4; // fuse_setattr_in.valid
  static final int FATTR_MTIME = 1 << 5;
  static final int FATTR_ATIME_NOW = 1 << 7;
  static final int FATTR_MTIME_NOW = 1 << 8;
  static final int FATTR_KILL_SUIDGID = 1 << 11;
  static final int UTIME_OMIT = (1 << 30) - 2;

  // Replies and notifications
  static final int FUSE_NOTIFY_INVAL_INODE = 2;
  /** The attributes' offset in fuse_attr_out and in fuse_entry_out. */
  static final int ATTR_OUT_ATTR = 16;
  static final int ENTRY_OUT_ATTR = 40;
  /** fuse_open_out.fh in a CREATE reply: after fuse_entry_out (128 bytes). */
  static final int CREATE_OUT_FH = 128;
  /** Offsets of mode and nlink in struct fuse_attr, and its size. */
  static final int ATTR_MODE = 60;
  static final int ATTR_NLINK = 64;
  static final int ATTR_SIZE = 88;
  static final int S_IFMT = 0170000;
  static final int S_IFDIR = 0040000;
}
