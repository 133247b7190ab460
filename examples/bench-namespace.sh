#!/usr/bin/env bash
# Namespace-heavy workloads, side by side in one run: the plain backing directory on disk
# against a wcfs mount over it (cache on tmpfs with PMEM_IS_PMEM_FORCE=1: durability SIMULATED,
# a stand-in for pmem; pass --cache-dir DIR to put the cache on a disk instead).
#   sqlite-delete  SQLite in its default rollback journal (journal_mode=DELETE,
#                  synchronous=FULL), one-row transactions
#   atomic-save    write a temp file, fsync it, rename it over the target, fsync the directory
#   churn          create, write 4 KiB, fsync, close, unlink
# Prints operations per second and the ratio wcfs/plain, per round; repeat with ROUNDS.
#
#   examples/bench-namespace.sh [SECONDS_PER_RUN] [ROUNDS] [--cache-dir DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
T="${1:-5}"
ROUNDS="${2:-2}"
cache_dir=""
if [ "${3:-}" = "--cache-dir" ]; then cache_dir="$4"; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: it mounts" >&2
  exit 1
fi
command -v python3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null
"$here/wcfs" --version >/dev/null   # builds if needed

work=$(mktemp -d /var/tmp/wcfs-bench-ns.XXXXXX)
if [ -n "$cache_dir" ]; then
  cache=$(mktemp -d "$cache_dir/wcfs-bench-ns-cache.XXXXXX")
else
  cache=$(mktemp -d /dev/shm/wcfs-bench-ns-cache.XXXXXX)
  export PMEM_IS_PMEM_FORCE=1
fi
mkdir -p "$work/backing/plain" "$work/backing/viawcfs" "$work/wcfs"
cleanup() {
  set +e
  grep -q " $work/wcfs " /proc/mounts && "$here/wcfs" umount "$work/wcfs" >/dev/null 2>&1
  grep -q " $work/wcfs " /proc/mounts && fusermount -u -z "$work/wcfs"
  rm -rf "$work" "$cache"
}
trap cleanup EXIT INT TERM
"$here/wcfs" mount --cache-size 512M "$cache" "$work/backing" "$work/wcfs" >/dev/null

run() { # workload dir -> ops/s
  python3 - "$1" "$2" "$T" <<'EOF'
import os, sqlite3, sys, time
workload, d, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(d, exist_ok=True)
n = 0
end = time.monotonic() + secs
if workload == "sqlite-delete":
    db = sqlite3.connect(os.path.join(d, "bench.db"), isolation_level=None)
    db.execute("pragma journal_mode=delete")
    db.execute("pragma synchronous=full")
    db.execute("create table if not exists t(k integer primary key, v text)")
    while time.monotonic() < end:
        db.execute("begin")
        db.execute("insert into t(v) values (?)", ("x" * 100,))
        db.execute("commit")
        n += 1
    db.close()
elif workload == "atomic-save":
    block = os.urandom(4096)
    dfd = os.open(d, os.O_RDONLY)
    while time.monotonic() < end:
        tmp = os.path.join(d, "config.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, block)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(d, "config"))
        os.fsync(dfd)
        n += 1
    os.close(dfd)
elif workload == "churn":
    block = os.urandom(4096)
    while time.monotonic() < end:
        p = os.path.join(d, "f%d" % (n % 16))
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, block)
        os.fsync(fd)
        os.close(fd)
        os.unlink(p)
        n += 1
print("%.0f" % (n / secs))
EOF
}

printf "%-14s %5s %12s %12s %8s\n" workload round plain/s wcfs/s ratio
for r in $(seq "$ROUNDS"); do
  for w in sqlite-delete atomic-save churn; do
    rm -rf "$work/backing/plain/$w" "$work/wcfs/viawcfs/$w"
    p=$(run "$w" "$work/backing/plain/$w")
    c=$(run "$w" "$work/wcfs/viawcfs/$w")
    printf "%-14s %5s %12s %12s %7.2fx\n" "$w" "$r" "$p" "$c" "$(awk "BEGIN{print $c / $p}")"
  done
done
"$here/wcfs" status "$work/wcfs" | grep -E "^(flushes|commit_latency_p50_us|backend)"
