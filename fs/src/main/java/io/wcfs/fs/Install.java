package io.wcfs.fs;

import io.wcfs.nativ.LibC;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code wcfs install}: the jar in PREFIX/lib/wcfs, a {@code wcfs} launcher in PREFIX/bin, and
 * the mount(8) helper {@code mount.wcfs} in /sbin (PREFIX/sbin for another prefix), so that an
 * fstab line of type wcfs mounts with {@code mount MOUNTPOINT} and {@code mount -a}. What was
 * written is listed in PREFIX/lib/wcfs/installed.txt, which {@code wcfs uninstall} removes.
 */
@Command(name = "install", description = {"Put wcfs on PATH and the mount(8) helper in place:",
    "PREFIX/bin/wcfs, PREFIX/lib/wcfs/wcfs.jar and SBIN/mount.wcfs (root for the defaults)."})
final class Install implements Callable<Integer> {
  static final String MARK = "# installed by `wcfs install`; `wcfs uninstall` removes it";
  static final Path DEFAULT_PREFIX = Path.of("/usr/local");

  @Option(names = "--prefix", paramLabel = "DIR", description = "Install under DIR (default:"
      + " /usr/local).")
  Path prefix = DEFAULT_PREFIX;

  @Option(names = "--sbin-dir", paramLabel = "DIR", description = "Where mount.wcfs goes"
      + " (default: /sbin, where mount(8) looks, or PREFIX/sbin for another --prefix).")
  Path sbinDir;

  record Layout(Path bin, Path lib, Path sbin) {
    Path launcher() {
      return bin.resolve("wcfs");
    }

    Path jar() {
      return lib.resolve("wcfs.jar");
    }

    Path helper() {
      return sbin.resolve("mount.wcfs");
    }

    Path manifest() {
      return lib.resolve("installed.txt");
    }
  }

  static Layout layout(Path prefix, Path sbinDir) {
    Path p = prefix.toAbsolutePath().normalize();
    Path sbin = sbinDir != null ? sbinDir.toAbsolutePath().normalize()
        : p.equals(DEFAULT_PREFIX) ? Path.of("/sbin") : p.resolve("sbin");
    return new Layout(p.resolve("bin"), p.resolve("lib/wcfs"), sbin);
  }

  @Override
  public Integer call() throws Exception {
    Layout l = layout(prefix, sbinDir);
    try {
      for (Path d : List.of(l.bin(), l.lib(), l.sbin())) {
        Files.createDirectories(d);
        if (!Files.isWritable(d)) {
          throw new AccessDeniedException(d.toString());
        }
      }
    } catch (AccessDeniedException e) {
      System.err.println("wcfs: install writes " + l.launcher() + ", " + l.jar() + " and "
          + l.helper() + " and may not write " + e.getFile() + "; run it as root: sudo "
          + selfCommand() + " install" + (prefix.equals(DEFAULT_PREFIX) ? ""
          : " --prefix " + prefix));
      return Main.EXIT_FAILURE;
    }
    List<Path> written = new ArrayList<>();
    Path self = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    String classpath;
    if (Files.isRegularFile(self)) {
      Path tmp = l.lib().resolve(".wcfs.jar.new");
      Files.copy(self, tmp, StandardCopyOption.REPLACE_EXISTING);
      Files.move(tmp, l.jar(), StandardCopyOption.REPLACE_EXISTING,
          StandardCopyOption.ATOMIC_MOVE); // a running daemon keeps the old one open
      written.add(l.jar());
      classpath = l.jar().toString();
    } else {
      // Not running from the jar (a development build, the tests): the launcher runs the
      // build's classes where they are.
      classpath = System.getProperty("java.class.path");
      System.out.println("wcfs: running from " + self + ", not from wcfs.jar: the launcher will"
          + " use this build's class path in place");
    }
    Path java = Files.isExecutable(Path.of("/usr/bin/java")) ? Path.of("/usr/bin/java")
        : Path.of(ProcessHandle.current().info().command().orElse("java"));
    script(l.launcher(), "#!/bin/sh\n" + MARK + "\nexec " + quote(java.toString())
        + " ${WCFS_JAVA_OPTS:-} -cp " + quote(classpath) + " " + Main.class.getName()
        + " \"$@\"\n");
    written.add(l.launcher());
    script(l.helper(), "#!/bin/sh\n" + MARK + "\n# mount(8) runs it for fstab lines of type"
        + " wcfs: BACKING MOUNTPOINT -o cache=CACHE[,options]\nexec " + quote(l.launcher()
        .toString()) + " mount.wcfs \"$@\"\n");
    written.add(l.helper());
    StringBuilder manifest = new StringBuilder();
    for (Path p : written) {
      manifest.append(p).append('\n');
    }
    Files.writeString(l.manifest(), manifest.toString(), StandardCharsets.UTF_8);
    System.out.println("wcfs: installed " + l.launcher() + ", " + l.helper()
        + (written.contains(l.jar()) ? ", " + l.jar() : "") + "; fstab lines of type wcfs now"
        + " mount (BACKING MOUNTPOINT wcfs cache=CACHE,noauto 0 0); `" + l.launcher()
        + " uninstall" + (prefix.equals(DEFAULT_PREFIX) ? "" : " --prefix " + prefix)
        + "` removes them");
    return 0;
  }

  private static void script(Path file, String text) throws IOException {
    Path tmp = file.resolveSibling("." + file.getFileName() + ".new");
    Files.writeString(tmp, text, StandardCharsets.UTF_8);
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  private static String quote(String s) {
    return "'" + s.replace("'", "'\\''") + "'";
  }

  static String selfCommand() {
    String launcher = System.getenv("WCFS_LAUNCHER");
    return launcher != null ? launcher : "wcfs";
  }

  @Command(name = "uninstall", description = "Remove what `wcfs install` put in place (same"
      + " --prefix and --sbin-dir).")
  static final class Uninstall implements Callable<Integer> {
    @Option(names = "--prefix", paramLabel = "DIR") Path prefix = DEFAULT_PREFIX;
    @Option(names = "--sbin-dir", paramLabel = "DIR") Path sbinDir;

    @Override
    public Integer call() throws Exception {
      Layout l = layout(prefix, sbinDir);
      if (!Files.exists(l.manifest())) {
        System.out.println("wcfs: nothing to remove: no " + l.manifest() + " (was it installed"
            + " with another --prefix?)");
        return 0;
      }
      if (LibC.geteuid() != 0 && !Files.isWritable(l.lib())) {
        System.err.println("wcfs: uninstall must remove files under " + l.lib() + "; run it as"
            + " root: sudo " + selfCommand() + " uninstall");
        return Main.EXIT_FAILURE;
      }
      List<String> removed = new ArrayList<>();
      for (String line : Files.readAllLines(l.manifest())) {
        Path p = Path.of(line.trim());
        if (line.isBlank() || !Files.exists(p)) {
          continue;
        }
        boolean ours = p.equals(l.jar()) || Files.readString(p, StandardCharsets.ISO_8859_1)
            .contains(MARK);
        if (!ours) {
          System.err.println("wcfs: leaving " + p + ": it was replaced by something that is"
              + " not wcfs's");
          continue;
        }
        Files.delete(p);
        removed.add(p.toString());
      }
      Files.delete(l.manifest());
      try (var s = Files.list(l.lib())) {
        if (s.findAny().isEmpty()) {
          Files.delete(l.lib());
        }
      }
      System.out.println("wcfs: removed " + String.join(", ", removed) + "; mounts still up"
          + " keep running until unmounted");
      return 0;
    }
  }
}
