package io.wcfs.fs;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * The {@code -o} options of {@code wcfs mount} and of the fstab helper, sorted into three kinds:
 * wcfs's own (every {@code wcfs mount} option as {@code name=value}, '-' or '_' alike), the FUSE
 * options libfuse takes, and mount(8)'s own, which a helper must accept and ignore. Anything
 * else is refused with one sentence, before anything is touched.
 */
final class MountOptions {
  /** wcfs's options that take a value, by their long option's name without "--". */
  static final Set<String> VALUED = Set.of("cache-size", "block-size", "high-watermark",
      "low-watermark", "writeback-jobs", "autocommit-blocks", "autocommit-time", "max-age",
      "flush-strategy", "threads", "spin-us", "log-file", "metrics", "cache", "lease",
      "fuse-transport");
  /** wcfs's options that are switches. */
  static final Set<String> SWITCHES = Set.of("cleaner", "noxattr", "no-xattr", "take-over",
      "single-machine");

  /** What libfuse2 accepts and the kernel or libfuse honours. */
  private static final Set<String> FUSE_SWITCHES = Set.of("allow_other", "allow_root",
      "default_permissions", "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec",
      "atime", "noatime", "sync", "async", "dirsync", "nonempty");
  private static final Set<String> FUSE_VALUED = Set.of("max_read", "attr_timeout",
      "entry_timeout", "negative_timeout", "umask", "uid", "gid", "context", "fscontext",
      "defcontext", "rootcontext");

  /**
   * mount(8)'s options, which it passes on to helpers: for mount(8) itself (noauto, user, ...),
   * for systemd (x-systemd.*), or atime variants a FUSE mount cannot take (libfuse2 refuses
   * them); accepted and dropped.
   */
  private static final Set<String> MOUNT8 = Set.of("defaults", "auto", "noauto", "_netdev",
      "nofail", "user", "users", "nouser", "owner", "group", "relatime", "norelatime",
      "strictatime", "nostrictatime", "lazytime", "nolazytime", "diratime", "nodiratime",
      "iversion", "noiversion", "mand", "nomand", "loud", "silent");

  /** wcfs options (canonical name -> value; "" for a switch) and FUSE options, in order. */
  record Parsed(Map<String, String> wcfs, List<String> fuse, List<String> ignored) {
    boolean has(String name) {
      return wcfs.containsKey(name);
    }
  }

  private MountOptions() {}

  static String canonical(String name) {
    return name.toLowerCase(Locale.ROOT).replace('_', '-');
  }

  /**
   * Sorts {@code raw} (each element may hold several comma-separated options). With {@code
   * sloppy} (mount -s) an unknown option is dropped with a warning instead of refused.
   */
  static Parsed parse(List<String> raw, boolean sloppy) {
    Map<String, String> wcfs = new LinkedHashMap<>();
    List<String> fuse = new ArrayList<>();
    List<String> ignored = new ArrayList<>();
    for (String group : raw) {
      for (String one : group.split(",")) {
        one = one.trim();
        if (one.isEmpty()) {
          continue;
        }
        int eq = one.indexOf('=');
        String name = eq < 0 ? one : one.substring(0, eq);
        String value = eq < 0 ? null : one.substring(eq + 1);
        String canon = canonical(name);
        if (eq < 0 && FUSE_SWITCHES.contains(name)
            || eq >= 0 && FUSE_VALUED.contains(name)) {
          fuse.add(one);
        } else if (VALUED.contains(canon)) {
          if (value == null || value.isEmpty()) {
            throw new UsageException("mount option '" + name + "' needs a value: give " + name
                + "=VALUE (e.g. " + example(canon) + ")");
          }
          if (wcfs.put(canon, value) != null) {
            throw new UsageException("mount option '" + name + "' is given twice; keep one");
          }
        } else if (SWITCHES.contains(canon)) {
          if (value != null && !value.isEmpty()) {
            throw new UsageException("mount option '" + name + "' takes no value: write just "
                + name);
          }
          wcfs.put(canon.equals("no-xattr") ? "noxattr" : canon, "");
        } else if (MOUNT8.contains(name) || name.startsWith("x-") || name.equals("comment")) {
          ignored.add(one);
        } else if (sloppy) {
          System.err.println("wcfs: ignoring unknown mount option '" + one + "' (mount -s)");
          ignored.add(one);
        } else {
          throw new UsageException("unknown mount option '" + one + "': give a wcfs option as"
              + " name=value (cache_size, block_size, high_watermark, low_watermark,"
              + " writeback_jobs, autocommit_blocks, autocommit_time, max_age, cleaner,"
              + " flush_strategy, threads, spin_us, fuse_transport, log_file, metrics, noxattr)"
              + " or a FUSE option"
              + " (allow_other, default_permissions, ro, nosuid, nodev, noexec, ...); see"
              + " `wcfs mount --help`");
        }
      }
    }
    return new Parsed(wcfs, fuse, ignored);
  }

  private static String example(String canon) {
    return switch (canon) {
      case "cache-size" -> "cache_size=1G";
      case "block-size" -> "block_size=4096";
      case "flush-strategy" -> "flush_strategy=auto";
      case "log-file" -> "log_file=/var/log/wcfs.log";
      case "metrics" -> "metrics=127.0.0.1:9567";
      case "fuse-transport" -> "fuse_transport=auto";
      case "cache" -> "cache=/mnt/pmem/wcfs.cache";
      case "high-watermark", "low-watermark" -> canon.replace('-', '_') + "=50";
      default -> canon.replace('-', '_') + "=1";
    };
  }

  /**
   * A metrics address: PORT (loopback), HOST:PORT, or [IPV6]:PORT. Loopback unless told
   * otherwise: an empty host is loopback too; 0.0.0.0 or [::] listen everywhere.
   */
  static InetSocketAddress metricsAddress(String text) {
    String host;
    String port;
    int colon = text.lastIndexOf(':');
    if (colon < 0) {
      host = "";
      port = text;
    } else {
      host = text.substring(0, colon);
      port = text.substring(colon + 1);
    }
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    }
    int p;
    try {
      p = Integer.parseInt(port);
    } catch (NumberFormatException e) {
      p = -1;
    }
    if (p < 1 || p > 65535) {
      throw new UsageException("metrics address '" + text + "' has no valid port: give"
          + " HOST:PORT or PORT with a port from 1 to 65535, e.g. 127.0.0.1:9567");
    }
    try {
      InetAddress addr = host.isEmpty() ? InetAddress.getLoopbackAddress()
          : InetAddress.getByName(host);
      return new InetSocketAddress(addr, p);
    } catch (UnknownHostException e) {
      throw new UsageException("metrics address '" + text + "': host '" + host + "' cannot be"
          + " resolved; give an IP address such as 127.0.0.1");
    }
  }
}
