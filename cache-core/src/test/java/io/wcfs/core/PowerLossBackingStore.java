package io.wcfs.core;

import io.wcfs.nativ.IoVec;
import io.wcfs.nativ.NativeBuffer;
import java.io.IOException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * An in-memory backing directory that can lose power: the backing-side counterpart of {@link
 * CrashingMemory}. It keeps, next to the tree every call sees, the tree a disk would show after
 * a power failure, and {@link #powerLoss} replaces the one with the other.
 *
 * <h2>Durability model</h2>
 *
 * <ul>
 *   <li><b>File data.</b> A file's data, size and mtime are durable as of its last {@link
 *       BackingFile#sync} (fsync(2): "all modified in-core data of the file ... is transferred
 *       to the disk"). Writes, truncates, zeroed ranges and mtimes since then are pending.
 *   <li><b>Directory entries.</b> A name created, removed or replaced in a directory is
 *       durable only after {@link #syncDirectory} of that directory. A file's fsync does not
 *       make its name durable: Linux fsync(2), "Calling fsync() does not necessarily ensure
 *       that the entry in the directory containing the file has also reached disk. For that an
 *       explicit fsync() on a file descriptor for the directory is also needed." That is
 *       stricter than ext4 and xfs in practice (their fsync of anything commits the whole
 *       running journal transaction, other files' names included), on purpose.
 *   <li><b>Renames</b> change one directory or two. With {@link RenameModel#SPLIT} (POSIX's
 *       reading, and what a filesystem without a journal such as ext2 gives) each directory's
 *       part is durable with that directory's own fsync: the old name's removal with the
 *       source directory's, the new name with the target's; between the two fsyncs a power
 *       loss leaves the file under both names (nlink 2) or under neither. With {@link
 *       RenameModel#JOURNALED} (ext4, xfs, btrfs: rename(2) is one journal transaction covering
 *       both directories) an fsync of either directory makes the whole rename durable, as
 *       ext4's fsync of a directory commits the transaction holding the rename.
 *   <li><b>What a power loss keeps.</b> {@link #powerLoss()} keeps exactly what is durable.
 *       {@link #powerLoss(Random)} keeps what is durable plus a random part of what is not, as a
 *       disk that wrote some dirty pages on its own (ext4 writes them back every few seconds):
 *       <ul>
 *         <li>per directory, a random prefix of its pending changes (none, all, or the first
 *             k): a directory's block is written as of some moment after its last fsync, so
 *             it shows its state at that moment, never a later change without an earlier one;
 *         <li>an operation's parts are kept or lost together (a rename within one directory
 *             never shows both or neither name; a rename across two directories survives in
 *             both or in neither unless an fsync made one part durable): a journal writes an
 *             operation whole;
 *         <li>per file, of the data written since its last fsync: nothing, everything, or a
 *             mix in 512-byte sectors (each sector old or new, independently) with the old or
 *             the new size, so a grown file may show zeros where its new data did not land
 *             (ext4 data=writeback; data=ordered shows fewer states, never more).
 *       </ul>
 *   <li>Hard links, symbolic links and special files (mknod) are directory entries like any
 *       other: durable with their directory's fsync. Symbolic links are stored, never followed.
 *   <li><b>Times</b> set by {@link #setTimes}: a file's mtime is durable with its fsync, a
 *       directory's with its own directory fsync, as above; atimes are not modelled, nor are
 *       the times of symlinks and special files (setTimes refuses them).
 *   <li><b>Modes and owners</b> are not modelled, since {@link Stat} shows neither: chmod and
 *       chown look the name up and count as a mutating call (a crash point), and access
 *       allows whatever exists. Nor are extended attributes (every xattr call answers
 *       ENOTSUP) or the struct stat the FUSE layer's getattr reads (statInto throws
 *       UnsupportedOperationException; the engine never calls it).
 *   <li>Inode numbers survive a power loss (the inode is the same); new inodes never reuse a
 *       number. {@code dev} is {@link #DEV}. A directory's nlink is always 2.
 * </ul>
 *
 * After a power loss every {@link BackingFile} opened before it fails with an IOException (its
 * descriptor belonged to the machine that went down). {@link #crashAfter} makes the n-th later
 * mutating call (create, mkdir, rmdir, link, symlink, mknod, chmod, chown, set times, rename,
 * unlink, directory fsync, and a file's write, truncate, zero range, fsync, set mtime) throw {@link CrashingMemory.SimulatedCrash} instead of
 * happening, and every call after it throw too, until {@link #powerLoss} or {@link
 * #processCrash}: the power went out there. Paths are relative to the root ("" is the root),
 * '/'-separated, without "." or "..". Errors are java.nio's: {@link NoSuchFileException}
 * (ENOENT), {@link FileAlreadyExistsException} (EEXIST), {@link DirectoryNotEmptyException}
 * (ENOTEMPTY), {@link NotDirectoryException} (ENOTDIR), and {@link FileSystemException} with
 * "Is a directory" (EISDIR) or "Invalid argument" (EINVAL). Thread-safe (one monitor).
 */
final class PowerLossBackingStore implements BackingStore {
  /** st_dev of every file. */
  static final long DEV = 0x7700_0051L;
  /** The root's inode number (ext4's). */
  static final long ROOT_INO = 2;
  /** What {@link #powerLoss(Random)} tears a file's pending data into. */
  static final int SECTOR = 512;

  /** How a rename across directories becomes durable (see the class comment). */
  enum RenameModel {
    /** Each directory's part with that directory's fsync (POSIX, ext2). */
    SPLIT,
    /** The whole rename with an fsync of either directory (ext4, xfs: one transaction). */
    JOURNALED
  }

  private abstract static class Node {
    final long ino;
    long mtime;
    long durableMtime;
    /** Names in the current tree. */
    int nlink;

    Node(long ino, long mtime) {
      this.ino = ino;
      this.mtime = mtime;
      this.durableMtime = mtime;
    }
  }

  private static final class FileNode extends Node {
    byte[] data = new byte[0]; // capacity; bytes at and past size are zero
    long size;
    byte[] durableData = new byte[0]; // exactly durableSize bytes
    /** Opened files write here whatever names the file has now, or none. */
    FileNode(long ino, long mtime) {
      super(ino, mtime);
    }
  }

  /** A symbolic link ({@code target} set) or a device, FIFO or socket node. */
  private static final class SpecialNode extends Node {
    final byte[] target;

    SpecialNode(long ino, long mtime, byte[] target) {
      super(ino, mtime);
      this.target = target;
    }
  }

  private static final class DirNode extends Node {
    TreeMap<String, Node> entries = new TreeMap<>();
    final TreeMap<String, Node> durable = new TreeMap<>();
    /** Changes of entries not durable yet, oldest first. */
    final List<Change> pending = new ArrayList<>();

    DirNode(long ino, long mtime) {
      super(ino, mtime);
    }
  }

  /** One namespace call: its changes, one per directory entry it touched. */
  private static final class Op {
    final String what;
    final List<Change> changes = new ArrayList<>();

    Op(String what) {
      this.what = what;
    }
  }

  /**
   * {@code dir}'s entry {@code name} now names {@code after} (null: removed). Compared by
   * identity: the pending lists find a change by itself, never by an equal one.
   */
  private static final class Change {
    private final Op op;
    private final DirNode dir;
    private final String name;
    private final Node after;

    Change(Op op, DirNode dir, String name, Node after) {
      this.op = op;
      this.dir = dir;
      this.name = name;
      this.after = after;
    }

    Op op() {
      return op;
    }

    DirNode dir() {
      return dir;
    }

    String name() {
      return name;
    }

    Node after() {
      return after;
    }
  }

  private final String label;
  private final RenameModel renameModel;
  private final DirNode root;
  private long nextIno = ROOT_INO + 1;
  private long clock = 1_700_000_000_000_000_000L;
  /** Bumped by every power loss and process crash: older handles are dead. */
  private long generation;
  private long countdown = -1;
  private boolean crashed;
  /** Namespace calls with changes not durable yet, oldest first. */
  private final List<Op> pendingOps = new ArrayList<>();
  /** Files changed since their last fsync (insertion order: deterministic for a seed). */
  private final Set<FileNode> dirtyFiles = new LinkedHashSet<>();
  private long fileSyncs;
  private long directorySyncs;
  private long mutations;
  private long powerLosses;

  PowerLossBackingStore() {
    this("powerloss", RenameModel.SPLIT);
  }

  /** {@code label} names the store in {@link #identity} (which the cache's superblock keeps). */
  PowerLossBackingStore(String label, RenameModel renameModel) {
    this.label = label;
    this.renameModel = renameModel;
    this.root = new DirNode(ROOT_INO, clock);
    root.nlink = 2;
  }

  RenameModel renameModel() {
    return renameModel;
  }

  // ---- crash control ------------------------------------------------------------------------

  /** The n-th mutating call from now (n = 0: the next one) throws instead of happening. */
  synchronized void crashAfter(long n) {
    countdown = n;
  }

  /** Whether the power went out ({@link #crashAfter} ran out) and no power loss followed yet. */
  synchronized boolean hasCrashed() {
    return crashed;
  }

  /** The power goes out now: every later call throws until {@link #powerLoss}. */
  synchronized void crash() {
    crashed = true;
  }

  /** Power loss keeping exactly what is durable. */
  synchronized void powerLoss() {
    powerLoss(null);
  }

  /**
   * Power loss: what was made durable stays, of the rest a random part chosen by {@code r}
   * (null: none) as the class comment describes; every open file becomes invalid; the crash
   * countdown is cleared.
   */
  synchronized void powerLoss(Random r) {
    // 1. Directories: a random prefix of each one's pending changes, an operation whole.
    List<DirNode> dirs = new ArrayList<>();
    Map<DirNode, Integer> cut = new IdentityHashMap<>();
    for (Op op : pendingOps) {
      for (Change c : op.changes) {
        if (!cut.containsKey(c.dir())) {
          int n = c.dir().pending.size();
          int k = r == null ? 0 : switch (r.nextInt(3)) {
            case 0 -> 0;
            case 1 -> n;
            default -> r.nextInt(n + 1);
          };
          cut.put(c.dir(), k);
          dirs.add(c.dir());
        }
      }
    }
    for (boolean changed = true; changed; ) {
      changed = false;
      for (Op op : pendingOps) {
        boolean in = false;
        boolean out = false;
        for (Change c : op.changes) {
          int i = c.dir().pending.indexOf(c);
          if (i >= 0) {
            if (i < cut.get(c.dir())) {
              in = true;
            } else {
              out = true;
            }
          }
        }
        if (in && out) { // cut every directory's prefix before this operation
          for (Change c : op.changes) {
            int i = c.dir().pending.indexOf(c);
            if (i >= 0 && i < cut.get(c.dir())) {
              cut.put(c.dir(), i);
            }
          }
          changed = true;
        }
      }
    }
    for (DirNode d : dirs) {
      for (Change c : d.pending.subList(0, cut.get(d))) {
        apply(d.durable, c);
      }
    }
    // 2. Files: none, all, or a sector-wise mix of the data written since the last fsync.
    for (FileNode f : dirtyFiles) {
      int mode = r == null ? 0 : r.nextInt(3);
      if (mode == 1) {
        f.durableData = Arrays.copyOf(f.data, (int) f.size);
        f.durableMtime = f.mtime;
      } else if (mode == 2) {
        int size = (int) (r.nextBoolean() ? f.size : f.durableData.length);
        byte[] mixed = new byte[size];
        for (int s = 0; s < size; s += SECTOR) {
          int len = Math.min(SECTOR, size - s);
          if (r.nextBoolean()) {
            copyPart(f.data, (int) f.size, s, mixed, len);
          } else {
            copyPart(f.durableData, f.durableData.length, s, mixed, len);
          }
        }
        f.durableData = mixed;
        f.durableMtime = r.nextBoolean() ? f.mtime : f.durableMtime;
      }
    }
    // 3. The durable tree is what the machine finds when it comes back.
    pendingOps.clear();
    dirtyFiles.clear();
    Map<Node, Boolean> seen = new IdentityHashMap<>();
    reset(root, seen);
    for (Node n : seen.keySet()) {
      n.nlink = n instanceof DirNode ? 2 : 0;
    }
    countLinks(root);
    generation++;
    crashed = false;
    countdown = -1;
    powerLosses++;
  }

  /**
   * Only the process using the store died (kill -9; the machine stays up): every change made
   * stays, durable or not, as the page cache keeps it; open files become invalid.
   */
  synchronized void processCrash() {
    generation++;
    crashed = false;
    countdown = -1;
  }

  /**
   * syncfs(2): every pending change durable, names and data. What recovery does first, since
   * it cannot know which changes a daemon killed before it left pending. A mutating call for
   * {@link #crashAfter}: the power may go out before it.
   */
  @Override
  public synchronized void syncAll() {
    tick();
    for (Op op : new ArrayList<>(pendingOps)) {
      for (Change c : op.changes) {
        int i = c.dir().pending.indexOf(c);
        if (i >= 0) {
          makeDurable(c.dir(), i + 1);
        }
      }
    }
    pendingOps.clear();
    for (FileNode f : dirtyFiles) {
      f.durableData = Arrays.copyOf(f.data, (int) f.size);
      f.durableMtime = f.mtime;
    }
    dirtyFiles.clear();
  }

  private static void copyPart(byte[] src, int srcSize, int at, byte[] dst, int len) {
    int n = Math.min(len, srcSize - at);
    if (n > 0) { // else zeros: past that version's end
      System.arraycopy(src, at, dst, at, n);
    }
  }

  private static void apply(Map<String, Node> entries, Change c) {
    if (c.after() == null) {
      entries.remove(c.name());
    } else {
      entries.put(c.name(), c.after());
    }
  }

  private static void reset(Node n, Map<Node, Boolean> seen) {
    if (seen.put(n, true) != null) {
      return;
    }
    n.mtime = n.durableMtime;
    if (n instanceof FileNode f) {
      f.data = f.durableData.clone();
      f.size = f.durableData.length;
    } else if (n instanceof DirNode d) {
      d.pending.clear();
      d.entries = new TreeMap<>(d.durable);
      for (Node child : d.entries.values()) {
        reset(child, seen);
      }
    }
  }

  private static void countLinks(DirNode d) {
    for (Node child : d.entries.values()) {
      if (child instanceof DirNode sub) {
        countLinks(sub);
      } else {
        child.nlink++;
      }
    }
  }

  /** Called first by every mutating call: the power may go out here. */
  private void tick() {
    checkPower();
    mutations++;
    if (countdown >= 0 && countdown-- == 0) {
      crashed = true;
      throw new CrashingMemory.SimulatedCrash();
    }
  }

  private void checkPower() {
    if (crashed) {
      throw new CrashingMemory.SimulatedCrash();
    }
  }

  // ---- counters and inspection --------------------------------------------------------------

  /** File fsyncs so far. */
  synchronized long fileSyncs() {
    return fileSyncs;
  }

  /** Directory fsyncs so far. */
  synchronized long directorySyncs() {
    return directorySyncs;
  }

  /** Mutating calls so far (what {@link #crashAfter} counts). */
  synchronized long mutations() {
    return mutations;
  }

  synchronized long powerLosses() {
    return powerLosses;
  }

  /** The current content of the regular file at {@code path}. */
  synchronized byte[] content(String path) throws IOException {
    Node n = lookup(path);
    if (n == null) {
      throw new NoSuchFileException(path);
    }
    if (!(n instanceof FileNode f)) {
      throw new FileSystemException(path, null, "Is a directory");
    }
    return Arrays.copyOf(f.data, (int) f.size);
  }

  /** Every regular file in the current tree: path -> inode number, sorted by path. */
  synchronized SortedMap<String, Long> files() {
    SortedMap<String, Long> out = new TreeMap<>();
    walk(root, "", (path, n) -> {
      if (n instanceof FileNode) {
        out.put(path, n.ino);
      }
    });
    return out;
  }

  /** Every path in the current tree, directories with a trailing '/', sorted. */
  synchronized List<String> tree() {
    List<String> out = new ArrayList<>();
    walk(root, "", (path, n) -> out.add(n instanceof DirNode ? path + "/" : path));
    return out;
  }

  private interface Visitor {
    void visit(String path, Node n);
  }

  private static void walk(DirNode d, String prefix, Visitor v) {
    for (Map.Entry<String, Node> e : d.entries.entrySet()) {
      String path = prefix.isEmpty() ? e.getKey() : prefix + "/" + e.getKey();
      v.visit(path, e.getValue());
      if (e.getValue() instanceof DirNode sub) {
        walk(sub, path, v);
      }
    }
  }

  @Override
  public synchronized String toString() {
    return "PowerLossBackingStore " + label + " " + tree();
  }

  // ---- paths --------------------------------------------------------------------------------

  private static String[] split(String path) {
    if (path.isEmpty()) {
      return new String[0];
    }
    String[] parts = path.split("/", -1);
    for (String p : parts) {
      if (p.isEmpty() || p.equals(".") || p.equals("..")) {
        throw new IllegalArgumentException("not a normalized relative path: '" + path + "'");
      }
    }
    return parts;
  }

  /** The node at {@code path}, or null (ENOENT); ENOTDIR when a parent is a file. */
  private Node lookup(String path) throws IOException {
    Node n = root;
    for (String part : split(path)) {
      if (!(n instanceof DirNode d)) {
        throw new NotDirectoryException(path);
      }
      n = d.entries.get(part);
      if (n == null) {
        return null;
      }
    }
    return n;
  }

  /** The directory holding {@code path}'s last component (which must exist). */
  private DirNode parent(String path) throws IOException {
    String[] parts = split(path);
    if (parts.length == 0) {
      throw new FileSystemException(path, null, "Device or resource busy"); // the root itself
    }
    int slash = path.lastIndexOf('/');
    Node p = slash < 0 ? root : lookup(path.substring(0, slash));
    if (p == null) {
      throw new NoSuchFileException(path);
    }
    if (!(p instanceof DirNode d)) {
      throw new NotDirectoryException(path);
    }
    return d;
  }

  private static String leaf(String path) {
    return path.substring(path.lastIndexOf('/') + 1);
  }

  /** Sets {@code dir}'s entry {@code name} to {@code after} (null: removes it) within op. */
  private void change(Op op, DirNode dir, String name, Node after) {
    Node before = after == null ? dir.entries.remove(name) : dir.entries.put(name, after);
    if (before != null && !(before instanceof DirNode)) {
      before.nlink--;
    }
    if (after != null && !(after instanceof DirNode)) {
      after.nlink++;
    }
    dir.mtime = ++clock;
    Change c = new Change(op, dir, name, after);
    op.changes.add(c);
    dir.pending.add(c);
  }

  private void record(Op op) {
    if (!op.changes.isEmpty()) {
      pendingOps.add(op);
    }
  }

  // ---- BackingStore -------------------------------------------------------------------------

  @Override
  public synchronized Stat stat(String path) throws IOException {
    checkPower();
    Node n = lookup(path);
    if (n == null) {
      return null;
    }
    long size = n instanceof FileNode f ? f.size
        : n instanceof SpecialNode sp ? (sp.target == null ? 0 : sp.target.length) : 4096;
    return new Stat(DEV, n.ino, size, n.mtime, n.nlink, n instanceof FileNode,
        n instanceof DirNode);
  }

  @Override
  public synchronized BackingFile open(String path) throws IOException {
    checkPower();
    Node n = lookup(path);
    if (n == null) {
      throw new NoSuchFileException(path);
    }
    if (!(n instanceof FileNode f)) {
      throw new FileSystemException(path, null, n instanceof DirNode ? "Is a directory"
          : "not a regular file (the model follows no symlink)");
    }
    return new Handle(f, path, generation);
  }

  /** mkdir -p of the parents, then the file (O_CREAT without O_EXCL): one mutating call. */
  @Override
  public synchronized void createFile(String path) throws IOException {
    tick();
    String[] parts = split(path);
    if (parts.length == 0) {
      throw new FileSystemException(path, null, "Is a directory");
    }
    Op op = new Op("create " + path);
    try {
      DirNode d = root;
      for (int i = 0; i < parts.length - 1; i++) {
        Node n = d.entries.get(parts[i]);
        if (n == null) {
          DirNode sub = new DirNode(nextIno++, ++clock);
          change(op, d, parts[i], sub);
          sub.nlink = 2;
          n = sub;
        }
        if (!(n instanceof DirNode sub)) {
          throw new NotDirectoryException(path);
        }
        d = sub;
      }
      Node n = d.entries.get(parts[parts.length - 1]);
      if (n instanceof DirNode) {
        throw new FileSystemException(path, null, "Is a directory");
      }
      if (n instanceof SpecialNode) {
        throw new FileSystemException(path, null, "not a regular file (the model follows no"
            + " symlink)");
      }
      if (n == null) {
        change(op, d, parts[parts.length - 1], new FileNode(nextIno++, ++clock));
      }
    } finally {
      record(op);
    }
  }

  @Override
  public BackingFile create(String path, int mode, int uid, int gid) throws IOException {
    createNew(path); // mode and owner are not modelled
    return open(path);
  }

  /** open(O_CREAT | O_EXCL): the parent must exist, the name must not. */
  synchronized void createNew(String path) throws IOException {
    tick();
    DirNode d = parent(path);
    if (d.entries.containsKey(leaf(path))) {
      throw new FileAlreadyExistsException(path);
    }
    Op op = new Op("create " + path);
    change(op, d, leaf(path), new FileNode(nextIno++, ++clock));
    record(op);
  }

  /** mkdir(2) as the tests make a directory. */
  void mkdir(String path) throws IOException {
    mkdir(path, 0755);
  }

  /** mkdir(2): the parent must exist, the name must not; the mode is not modelled. */
  @Override
  public synchronized void mkdir(String path, int mode) throws IOException {
    tick();
    DirNode d = parent(path);
    if (d.entries.containsKey(leaf(path))) {
      throw new FileAlreadyExistsException(path);
    }
    Op op = new Op("mkdir " + path);
    DirNode sub = new DirNode(nextIno++, ++clock);
    change(op, d, leaf(path), sub);
    sub.nlink = 2;
    record(op);
  }

  /** rmdir(2). */
  @Override
  public synchronized void rmdir(String path) throws IOException {
    tick();
    DirNode d = parent(path);
    Node n = d.entries.get(leaf(path));
    if (n == null) {
      throw new NoSuchFileException(path);
    }
    if (!(n instanceof DirNode sub)) {
      throw new NotDirectoryException(path);
    }
    if (!sub.entries.isEmpty()) {
      throw new DirectoryNotEmptyException(path);
    }
    Op op = new Op("rmdir " + path);
    change(op, d, leaf(path), null);
    record(op);
  }

  /** link(2): a new name for a file or special node (not a directory: EPERM). */
  @Override
  public synchronized void link(String from, String to) throws IOException {
    tick();
    Node n = lookup(from);
    if (n == null) {
      throw new NoSuchFileException(from);
    }
    if (n instanceof DirNode) {
      throw new FileSystemException(from, to, "Operation not permitted");
    }
    newEntry("link " + from + " " + to, to, n);
  }

  @Override
  public synchronized void symlink(String target, String path) throws IOException {
    tick();
    newEntry("symlink " + path, path, new SpecialNode(nextIno++, ++clock,
        target.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
  }

  /** mknod(2): the node's type and rdev are not modelled, only that it is no file to open. */
  @Override
  public synchronized void mknod(String path, int mode, long rdev) throws IOException {
    tick();
    newEntry("mknod " + path, path, new SpecialNode(nextIno++, ++clock, null));
  }

  /** {@code path} names {@code n} from now: the parent must exist, the name must not. */
  private void newEntry(String what, String path, Node n) throws IOException {
    DirNode d = parent(path);
    if (d.entries.containsKey(leaf(path))) {
      throw new FileAlreadyExistsException(path);
    }
    Op op = new Op(what);
    change(op, d, leaf(path), n);
    record(op);
  }

  /** Modes are not modelled (see the class comment): the name must exist. */
  @Override
  public synchronized void chmod(String path, int mode) throws IOException {
    tick();
    existing(path);
  }

  /** Owners are not modelled (see the class comment): the name must exist. */
  @Override
  public synchronized void chown(String path, int uid, int gid) throws IOException {
    tick();
    existing(path);
  }

  /**
   * The mtime of a file (durable with its fsync) or directory (with its directory fsync); NOW
   * is the store's clock. atime is not modelled.
   */
  @Override
  public synchronized void setTimes(String path, TimeSpec atime, TimeSpec mtime)
      throws IOException {
    tick();
    Node n = existing(path);
    if (n instanceof SpecialNode) {
      throw new UnsupportedOperationException("times of symlinks and special files are not"
          + " modelled: " + path);
    }
    if (mtime.isOmit()) {
      return;
    }
    n.mtime = mtime.isNow() ? ++clock : mtime.toNanos();
    if (n instanceof FileNode f) {
      dirtyFiles.add(f);
    }
  }

  private Node existing(String path) throws IOException {
    Node n = lookup(path);
    if (n == null) {
      throw new NoSuchFileException(path);
    }
    return n;
  }

  @Override
  public synchronized void list(String dir, java.util.function.Predicate<String> each)
      throws IOException {
    checkPower();
    if (!(existing(dir) instanceof DirNode d)) {
      throw new NotDirectoryException(dir);
    }
    for (String name : new ArrayList<>(d.entries.keySet())) {
      if (!each.test(name)) {
        return;
      }
    }
  }

  @Override
  public synchronized byte[] readlink(String path) throws IOException {
    checkPower();
    if (!(existing(path) instanceof SpecialNode sp) || sp.target == null) {
      throw new FileSystemException(path, null, "Invalid argument");
    }
    return sp.target.clone();
  }

  /** Modes are not modelled: whatever exists may be accessed. */
  @Override
  public synchronized void access(String path, int mask) throws IOException {
    checkPower();
    existing(path);
  }

  /** A fixed 1 GiB filesystem of 4 KiB blocks, less what the files' current data takes. */
  @Override
  public synchronized FsStats statfs() {
    checkPower();
    long used = 0;
    long inodes = 0;
    List<Node> all = new ArrayList<>();
    walk(root, "", (path, n) -> all.add(n));
    for (Node n : new java.util.HashSet<>(all)) { // hard links: each inode once
      used += n instanceof FileNode f ? (f.size + 4095) / 4096 : 1;
      inodes++;
    }
    long blocks = 1L << 18;
    long inodeCount = 1L << 16;
    return new FsStats(4096, 4096, blocks, blocks - used, blocks - used, inodeCount,
        inodeCount - inodes, inodeCount - inodes, DEV, 0, 255);
  }

  @Override
  public synchronized void syncDirectory(String path) throws IOException {
    tick();
    Node n = lookup(path);
    if (n == null) {
      throw new NoSuchFileException(path);
    }
    if (!(n instanceof DirNode d)) {
      throw new NotDirectoryException(path);
    }
    directorySyncs++;
    makeDurable(d, d.pending.size());
    d.durableMtime = d.mtime;
    pendingOps.removeIf(op -> op.changes.stream().noneMatch(c -> c.dir().pending.contains(c)));
  }

  /**
   * Makes the first {@code n} pending changes of {@code d} durable; with {@link
   * RenameModel#JOURNALED}, the other parts of their operations too (and what precedes those
   * in their directories: a journal commits in order).
   */
  private void makeDurable(DirNode d, int n) {
    List<Change> now = new ArrayList<>(d.pending.subList(0, n));
    d.pending.subList(0, n).clear();
    for (Change c : now) {
      apply(d.durable, c);
    }
    if (renameModel == RenameModel.JOURNALED) {
      for (Change c : now) {
        for (Change other : c.op().changes) {
          int i = other.dir().pending.indexOf(other);
          if (i >= 0) {
            makeDurable(other.dir(), i + 1);
          }
        }
      }
    }
  }

  @Override
  public synchronized void unlink(String path) throws IOException {
    tick();
    DirNode d = parent(path);
    Node n = d.entries.get(leaf(path));
    if (n == null) {
      throw new NoSuchFileException(path);
    }
    if (n instanceof DirNode) {
      throw new FileSystemException(path, null, "Is a directory");
    }
    Op op = new Op("unlink " + path);
    change(op, d, leaf(path), null);
    record(op);
  }

  /** rename(2): replaces a file or an empty directory at {@code to}. */
  @Override
  public synchronized void rename(String from, String to) throws IOException {
    tick();
    DirNode src = parent(from);
    Node n = src.entries.get(leaf(from));
    if (n == null) {
      throw new NoSuchFileException(from);
    }
    DirNode dst = parent(to);
    Node old = dst.entries.get(leaf(to));
    if (old == n) {
      return; // the same file: rename(2) does nothing
    }
    if (n instanceof DirNode && (to + "/").startsWith(from + "/")) {
      throw new FileSystemException(from, to, "Invalid argument"); // into itself
    }
    if (old != null) {
      if (n instanceof DirNode && !(old instanceof DirNode)) {
        throw new NotDirectoryException(to);
      }
      if (!(n instanceof DirNode) && old instanceof DirNode) {
        throw new FileSystemException(to, null, "Is a directory");
      }
      if (old instanceof DirNode od && !od.entries.isEmpty()) {
        throw new DirectoryNotEmptyException(to);
      }
    }
    Op op = new Op("rename " + from + " " + to);
    change(op, dst, leaf(to), n); // the new name first, as ext2 orders it
    change(op, src, leaf(from), null);
    record(op);
  }

  /** Stable across power losses: the root's inode and the store's label. */
  /**
   * Not modelled: getattr is the FUSE layer's, whose tests run on a DirectoryBackingStore; the
   * engine never calls it, so no test here does.
   */
  @Override
  public int statInto(String path, long statBuf) {
    throw new UnsupportedOperationException("struct stat is not modelled");
  }

  // Extended attributes are not modelled: the store answers as a filesystem without them
  // (ENOTSUP), so nothing is ever held to be synced. The engine calls none of these.

  private static final int ENOTSUP = 95;

  @Override
  public long getXattr(String path, String name, long buf, long size) {
    return -ENOTSUP;
  }

  @Override
  public long listXattrs(String path, long buf, long size) {
    return -ENOTSUP;
  }

  @Override
  public int setXattr(String path, String name, long value, long size, int flags) {
    return -ENOTSUP;
  }

  @Override
  public int removeXattr(String path, String name) {
    return -ENOTSUP;
  }

  /** Never called: no attribute change succeeds here (see above). */
  @Override
  public HeldNode holdToSync(String path) {
    throw new UnsupportedOperationException("extended attributes are not modelled");
  }

  @Override
  public CacheLayout.BackingIdentity identity() {
    return new CacheLayout.BackingIdentity(ROOT_INO, "powerloss:" + label);
  }

  /** An open file: reaches its inode whatever its names are now, until the power goes. */
  private final class Handle implements BackingFile {
    private final FileNode f;
    private final String path;
    private final long openedIn;
    private boolean closed;

    Handle(FileNode f, String path, long generation) {
      this.f = f;
      this.path = path;
      this.openedIn = generation;
    }

    private void check() throws IOException {
      checkPower();
      if (closed) {
        throw new IOException(path + ": file was closed");
      }
      if (openedIn != generation) {
        throw new IOException(path + ": opened before a power loss (stale descriptor)");
      }
    }

    private void ensure(long end) {
      if (end > f.data.length) {
        f.data = Arrays.copyOf(f.data, (int) Math.max(end, 2L * f.data.length));
      }
    }

    private void dirty() {
      f.mtime = ++clock;
      dirtyFiles.add(f);
    }

    @Override
    public long read(long position, long dstAddress, long length) throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        long n = Math.max(0, Math.min(length, f.size - position));
        if (n > 0) {
          NativeBuffer.putBytes(dstAddress, f.data, (int) position, (int) n);
        }
        return n;
      }
    }

    @Override
    public void write(long position, long srcAddress, long length) throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        tick();
        put(position, srcAddress, length);
      }
    }

    private void put(long position, long srcAddress, long length) {
      ensure(position + length);
      NativeBuffer.getBytes(srcAddress, f.data, (int) position, (int) length);
      f.size = Math.max(f.size, position + length);
      dirty();
    }

    /** One mutating call for the whole gather. */
    @Override
    public void writeBlocks(long position, IoVec data, boolean direct) throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        tick();
        for (int i = 0; i < data.count(); i++) {
          put(position, data.base(i), data.length(i));
          position += data.length(i);
        }
      }
    }

    @Override
    public long size() throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        return f.size;
      }
    }

    @Override
    public void truncate(long size) throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        tick();
        if (size < f.size) {
          Arrays.fill(f.data, (int) size, (int) f.size, (byte) 0);
        } else {
          ensure(size);
        }
        f.size = size;
        dirty();
      }
    }

    /** Zeros below the end of file, never past it (KEEP_SIZE), one mutating call. */
    @Override
    public void zeroRange(long position, long length, boolean punch) throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        tick();
        long end = Math.min(position + length, f.size);
        if (end > position) {
          Arrays.fill(f.data, (int) position, (int) end, (byte) 0);
        }
        dirty();
      }
    }

    @Override
    public void sync() throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        tick();
        fileSyncs++;
        f.durableData = Arrays.copyOf(f.data, (int) f.size);
        f.durableMtime = f.mtime;
        dirtyFiles.remove(f);
      }
    }

    @Override
    public void setMtime(long mtimeNanos) throws IOException {
      synchronized (PowerLossBackingStore.this) {
        check();
        tick();
        f.mtime = mtimeNanos;
        dirtyFiles.add(f);
      }
    }

    /** Never fails: closing a descriptor after a crash is what the engine's teardown does. */
    @Override
    public void close() {
      synchronized (PowerLossBackingStore.this) {
        closed = true;
      }
    }
  }
}
