#!/usr/bin/env bash
# Namespace-heavy workloads, side by side in one run, on three setups whose directories all
# live on the same disk (under /var/tmp):
#   plain  - a plain directory
#   wcfs   - a wcfs mount over a directory (cache on tmpfs with PMEM_IS_PMEM_FORCE=1:
#            durability SIMULATED, a stand-in for pmem; --cache-dir DIR puts it on a disk)
#   fuse   - libfuse's passthrough_ll example over a directory: what any FUSE filesystem pays
#            per request (as in examples/bench-databases.sh; skip it with --no-fuse)
# Workloads, each one client running for SECONDS_PER_RUN:
#   sqlite-delete  SQLite in its default rollback journal (journal_mode=DELETE,
#                  synchronous=FULL), one-row transactions
#   atomic-save    write a temp file, fsync it, rename it over the target, fsync the directory
#   churn          create, write 4 KiB, fsync, close, unlink
# Per round: operations per second of each setup and the ratios wcfs/plain and
# wcfs/passthrough_ll. After each wcfs run: what that run cost per operation in the daemon's
# counters (the difference of `wcfs status --json` before and after, divided by the
# operations: commits (field flushes), device flushes, block writes, written-back blocks,
# getxattr requests, and any counter a later version adds), and the status lines about the
# cache's state (dirty and free blocks, writeback, commit latency, and any field naming a
# journal or namespace operations).
# The FUSE requests per operation, by opcode (fuse_lookup, fuse_write ...) and in all
# (fuse_requests), are among those counters.
# One wcfs mount serves every run. --sustained: 60 s per run and 1 round unless given, so that
# a bounded journal in the cache fills and wraps (--cache-size, default 512M, makes the cache
# smaller); the status lines are also sampled every 10 s during each wcfs run.
# At the end: RESULTS/bench-namespace.csv, and through examples/bench-report.py the median
# over the rounds as a table (bench-namespace.txt) and a plot (bench-namespace.png).
#
#   examples/bench-namespace.sh [SECONDS_PER_RUN] [ROUNDS] [--sustained] [--cache-dir DIR]
#                               [--cache-size SIZE] [--no-fuse] [--results DIR]
# (default RESULTS: examples/results)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
T=""
ROUNDS=""
cache_dir=""
cache_size=512M
SUSTAINED=0
FUSE=1
results="$here/examples/results"
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) cache_dir="$2"; shift 2;;
    --cache-size) cache_size="$2"; shift 2;;
    --sustained) SUSTAINED=1; shift;;
    --no-fuse) FUSE=0; shift;;
    --results) results="$2"; shift 2;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    -*) echo "unknown option $1 (--help)" >&2; exit 2;;
    *)
      if [ -z "$T" ]; then T="$1"; elif [ -z "$ROUNDS" ]; then ROUNDS="$1"
      else echo "too many arguments (--help)" >&2; exit 2; fi
      shift;;
  esac
done
if [ "$SUSTAINED" = 1 ]; then T="${T:-60}"; ROUNDS="${ROUNDS:-1}"; else T="${T:-5}"; ROUNDS="${ROUNDS:-2}"; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: it installs packages and mounts" >&2
  exit 1
fi
pkgs=()
command -v python3 >/dev/null || pkgs+=(python3)
command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
if [ "$FUSE" = 1 ]; then
  [ -f /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c ] || pkgs+=(libfuse3-dev)
  command -v pkg-config >/dev/null || pkgs+=(pkg-config)
  command -v gcc >/dev/null || pkgs+=(gcc)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]} ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; }
fi
"$here/wcfs" --version >/dev/null   # builds if needed
mkdir -p "$results"
csv="$results/bench-namespace.csv"
per_op_csv="$results/bench-namespace-per-op.csv"

work=$(mktemp -d /var/tmp/wcfs-bench-ns.XXXXXX)
if [ -n "$cache_dir" ]; then
  cache=$(mktemp -d "$cache_dir/wcfs-bench-ns-cache.XXXXXX")
  cache_desc="$cache_size cache in $cache_dir"
else
  cache=$(mktemp -d /dev/shm/wcfs-bench-ns-cache.XXXXXX)
  export PMEM_IS_PMEM_FORCE=1
  cache_desc="$cache_size cache on tmpfs with PMEM_IS_PMEM_FORCE=1 (durability simulated)"
fi
mkdir -p "$work/plain" "$work/backing" "$work/wcfs" "$work/ptsrc" "$work/fuse"
pt_pid=""
sampler_pid=""
cleanup() {
  set +e
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  grep -q " $work/wcfs " /proc/mounts && "$here/wcfs" umount "$work/wcfs" >/dev/null 2>&1
  grep -q " $work/wcfs " /proc/mounts && fusermount -u -z "$work/wcfs"
  grep -q " $work/fuse " /proc/mounts && fusermount3 -u -z "$work/fuse"
  [ -n "$pt_pid" ] && kill "$pt_pid" 2>/dev/null
  rm -rf "$work" "$cache"
}
trap cleanup EXIT INT TERM

"$here/wcfs" mount --cache-size "$cache_size" "$cache" "$work/backing" "$work/wcfs" >/dev/null
if [ "$FUSE" = 1 ]; then
  gcc -O2 -Wall /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c -o "$work/passthrough_ll" \
    $(pkg-config fuse3 --cflags --libs)
  "$work/passthrough_ll" -o source="$work/ptsrc" -f "$work/fuse" >/dev/null 2>&1 &
  pt_pid=$!
  for _ in $(seq 100); do grep -q " $work/fuse " /proc/mounts && break; sleep 0.1; done
  grep -q " $work/fuse " /proc/mounts || { echo "passthrough_ll did not mount" >&2; exit 1; }
fi

run() { # workload dir -> "OPS_PER_SECOND OPERATIONS"
  python3 - "$1" "$2" "$T" <<'EOF'
import os, sqlite3, sys, time
workload, d, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(d, exist_ok=True)
n = 0
start = time.monotonic()
end = start + secs
if workload == "sqlite-delete":
    db = sqlite3.connect(os.path.join(d, "bench.db"), isolation_level=None)
    db.execute("pragma journal_mode=delete")
    db.execute("pragma synchronous=full")
    db.execute("create table if not exists t(k integer primary key, v text)")
    start = time.monotonic()
    end = start + secs
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
print("%.0f %d" % (n / (time.monotonic() - start), n))
EOF
}

status_json() { "$here/wcfs" status --json "$work/wcfs"; }
# Status lines about the cache's state that matter for namespace operations; matched by name so
# that fields a later version adds (a journal's use, elided creates) show without a change here.
status_re='journal|namespace|elide|creat|unlink|renam|^dirty|^free_blocks|^uncommitted|oldest_dirty|writeback|written_back|flushes$|commit_latency|blocked|waiting|^error'
# Per-operation cost of one wcfs run: every numeric status field that grew, except the gauges.
# Also records them in $per_op_csv (workload,field,value).
per_op() { # workload operations before-json after-json
  python3 - "$@" "$per_op_csv" <<'EOF'
import json, sys
w, n, a, b, csvf = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
gauges = {"pid", "uid", "block_size", "blocks", "free_blocks", "dirty_blocks", "dirty_bytes",
          "uncommitted_blocks", "oldest_dirty_age_ms", "writeback_blocks_in_flight",
          "writers_waiting_now", "largest_write_request_bytes", "max_age_ms"}
out = []
with open(csvf, "a") as f:
    for k, v in b.items():
        if (k in gauges or "latency" in k or not isinstance(v, (int, float))
                or isinstance(v, bool) or not isinstance(a.get(k, 0), (int, float))):
            continue
        d = v - a.get(k, 0)  # the fuse_* counters appear once their opcode was first seen
        if d > 0 and n > 0:
            out.append(f"{k} {d / n:.2f}")
            f.write(f"{w},{k},{d / n:.4f}\n")
line, lines = "    wcfs per op (%d ops):" % n, []
for o in out or ["no counter moved"]:
    if len(line) + len(o) > 96:
        lines.append(line + ",")
        line = "     "
    line += (" " if line.endswith(":") or line == "     " else ", ") + o
print("\n".join(lines + [line]))
EOF
}
show_status() { # prefix: the matching fields, wrapped at 100 columns
  "$here/wcfs" status "$work/wcfs" | awk -v re="$status_re" -v p="$1" '
    $1 ~ re { f = $1 " " $2; for (i = 3; i <= NF; i++) f = f " " $i
              if (line != "" && length(line) + length(f) > 96) { print line ","; line = "      " f }
              else line = (line == "" ? p f : line ", " f) }
    END { if (line != "") print line }'
}
start_sampler() {
  ( s=0; while sleep 10; do s=$((s + 10)); show_status "    t=${s}s: "; done ) &
  sampler_pid=$!
}
stop_sampler() {
  [ -n "$sampler_pid" ] && { kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null || true; }
  sampler_pid=""
}

echo "setup,metric,value" > "$csv"
echo "workload,field,value" > "$per_op_csv"
echo "# $(date -u +%FT%TZ), $T s per run, $ROUNDS round(s), load $(cut -d' ' -f1 /proc/loadavg) before, $cache_desc"
printf "%-14s %5s %10s %10s %11s %11s %14s\n" workload round plain/s wcfs/s passthru/s wcfs/plain wcfs/passthru
for r in $(seq "$ROUNDS"); do
  for w in sqlite-delete atomic-save churn; do
    rm -rf "$work/plain/$w" "$work/wcfs/$w" "$work/fuse/$w"
    out=$(run "$w" "$work/plain/$w"); read -r p _ <<< "$out"
    s0=$(status_json)
    [ "$SUSTAINED" = 1 ] && start_sampler
    out=$(run "$w" "$work/wcfs/$w"); read -r c cn <<< "$out"
    stop_sampler
    s1=$(status_json)
    f="-"
    if [ "$FUSE" = 1 ]; then out=$(run "$w" "$work/fuse/$w"); read -r f _ <<< "$out"; fi
    echo "plain,${w}_ops_per_sec,$p" >> "$csv"
    echo "wcfs,${w}_ops_per_sec,$c" >> "$csv"
    [ "$FUSE" = 1 ] && echo "fuse,${w}_ops_per_sec,$f" >> "$csv"
    printf "%-14s %5s %10s %10s %11s %10.2fx %13s\n" "$w" "$r" "$p" "$c" "$f" \
      "$(awk "BEGIN{print $c / $p}")" \
      "$([ "$FUSE" = 1 ] && awk "BEGIN{printf \"%.2fx\", $c / $f}" || echo -)"
    per_op "$w" "$cn" "$s0" "$s1"
    show_status "    wcfs status: "
  done
done
echo "# load $(cut -d' ' -f1 /proc/loadavg) after"
"$here/wcfs" status "$work/wcfs" | grep -E "^backend"
echo
note="namespace workloads, $T s per run, median of $ROUNDS round(s)"
[ "$SUSTAINED" = 1 ] && note="$note, sustained"
"$here/examples/bench-report.py" "$results" "$note" --name bench-namespace --cache "$cache_desc"
# The wcfs counters per operation, median over the rounds, under the table in bench-namespace.txt.
python3 - "$per_op_csv" "$results/bench-namespace.txt" <<'EOF'
import collections, csv, statistics, sys
v = collections.OrderedDict()
for r in csv.DictReader(open(sys.argv[1])):
    v.setdefault(r["field"], {}).setdefault(r["workload"], []).append(float(r["value"]))
ws = ["sqlite-delete", "atomic-save", "churn"]
out = ["", "wcfs status counters per operation (difference over the run / operations):",
       f"{'field':34}" + "".join(f" {w:>14}" for w in ws)]
for field, by in v.items():
    out.append(f"{field:34}" + "".join(
        f" {statistics.median(by[w]) if w in by else 0:>14.2f}" for w in ws))
text = "\n".join(out)
print(text)
open(sys.argv[2], "a").write(text + "\n")
EOF
