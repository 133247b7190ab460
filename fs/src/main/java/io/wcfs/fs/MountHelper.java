package io.wcfs.fs;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * What /sbin/mount.wcfs runs: mount(8) calls a helper as {@code mount.wcfs SPEC DIR [-sfnv]
 * [-N NAMESPACE] [-o OPTIONS] [-t TYPE]} for an fstab line
 * {@code BACKING MOUNTPOINT wcfs cache=CACHE[,option=value...] 0 0}. The cache comes from
 * {@code cache=}; every other option is {@code wcfs mount}'s (see {@link MountOptions}). Like
 * {@code wcfs mount}, it returns once the mount is usable.
 */
@Command(name = "mount.wcfs", hidden = true, description = "mount(8) helper: BACKING"
    + " MOUNTPOINT -o cache=CACHE[,OPTIONS]")
final class MountHelper implements Callable<Integer> {
  @Parameters(index = "0", paramLabel = "BACKING") String backing;
  @Parameters(index = "1", paramLabel = "MOUNTPOINT") String mountpoint;

  @Option(names = "-o", paramLabel = "OPTIONS") List<String> options = new ArrayList<>();
  @Option(names = "-s", description = "sloppy: ignore unknown options") boolean sloppy;
  @Option(names = "-f", description = "fake: check, mount nothing") boolean fake;
  @Option(names = "-n", description = "no mtab (there is none to write)") boolean noMtab;
  @Option(names = "-v", description = "verbose") boolean verbose;
  @Option(names = "-t", paramLabel = "TYPE") String type;
  @Option(names = "-N", paramLabel = "NAMESPACE") String namespace;

  @Override
  public Integer call() throws Exception {
    if (namespace != null) {
      throw new UsageException("mount.wcfs cannot mount into another mount namespace (-N "
          + namespace + "); run mount inside that namespace instead");
    }
    MountOptions.Parsed parsed = MountOptions.parse(options, sloppy);
    String cache = parsed.wcfs().get("cache");
    if (cache == null) {
      throw new UsageException("the fstab line for " + mountpoint + " has no cache= option;"
          + " add one naming the cache (a pmem device, a cache file, or a directory to hold"
          + " wcfs.cache), e.g. " + backing + " " + mountpoint + " wcfs cache=/mnt/pmem,noauto"
          + " 0 0");
    }
    List<String> rest = new ArrayList<>(parsed.fuse());
    for (Map.Entry<String, String> e : parsed.wcfs().entrySet()) {
      if (!e.getKey().equals("cache")) {
        rest.add(e.getValue().isEmpty() ? e.getKey() : e.getKey() + "=" + e.getValue());
      }
    }
    List<String> argv = new ArrayList<>(List.of("mount"));
    if (!rest.isEmpty()) {
      argv.add("-o");
      argv.add(String.join(",", rest));
    }
    argv.addAll(List.of(cache, backing, mountpoint));
    if (verbose || fake) {
      System.err.println("mount.wcfs: wcfs " + String.join(" ", argv)
          + (parsed.ignored().isEmpty() ? "" : "  (ignored: " + String.join(",",
          parsed.ignored()) + ")"));
    }
    if (fake) {
      return 0;
    }
    Path mp = Path.of(mountpoint).toAbsolutePath().normalize();
    if (Mounts.isWcfs(mp)) {
      // mount -a runs the helper again for a line that is already mounted (libmount cannot
      // match our "wcfs" source to the fstab line's): the same mount is nothing to do.
      String[] shown = {null};
      ControlClient.request(mp, "status-json", line -> {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"backing\": \"([^\"]*)\"")
            .matcher(line);
        if (m.find()) {
          shown[0] = m.group(1);
        }
      });
      if (shown[0] != null && Path.of(backing).toRealPath().toString().equals(shown[0])) {
        System.err.println("mount.wcfs: " + mountpoint + " is already mounted over " + backing);
        return 0;
      }
    }
    return Main.commandLine().execute(argv.toArray(String[]::new));
  }
}
