#!/usr/bin/env bash
# Reads of data that is only in the backing directory (issue "cold reads"), side by side in one
# run over the same backing directory (under /var/tmp, on the disk):
#   wcfs   - a wcfs mount over it (cache on tmpfs with PMEM_IS_PMEM_FORCE=1; nothing of the
#            file is in the cache: it was written to the backing directory before the mount)
#   fuse   - libfuse's passthrough_ll example over the same directory (the reference: what a
#            FUSE filesystem that only passes reads through pays)
# Workloads on one FILE_SIZE file, fio, each SECONDS long:
#   cold-rand4k-1   4 KiB random reads, 1 job, page cache dropped before (echo 3 > drop_caches)
#   cold-rand4k-4   the same with 4 jobs, each in its own quarter of the file (every read a miss)
#   cold-seq1m-1    1 MiB sequential reads, 1 job, page cache dropped before
#   warm-rand4k-1   4 KiB random reads, 1 job, right after a full read of the file (backing
#                   file in the page cache; fio --invalidate=1 drops the mount's own cache)
# ROUNDS rounds, setups alternating within each; prints IOPS (MiB/s for the 1 MiB run) per
# round and the ratio wcfs/fuse, writes RESULTS/bench-coldread.csv and bench-coldread.txt
# (the median over the rounds, with the range).
#
#   examples/bench-coldread.sh [SECONDS] [ROUNDS] [FILE_SIZE] [--results DIR]
# (defaults: 8 s, 2 rounds, 2G: large enough that few reads of a run hit a page an earlier one
# read; RESULTS: examples/results)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
results="$here/examples/results"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --results) results="$2"; shift 2;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    -*) echo "unknown option $1 (--help)" >&2; exit 2;;
    *) args+=("$1"); shift;;
  esac
done
T="${args[0]:-8}"
ROUNDS="${args[1]:-2}"
SIZE="${args[2]:-2G}"
QUARTER=$(( $(numfmt --from=iec "$SIZE") / 4 ))
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: it installs packages, mounts and drops the page cache" >&2
  exit 1
fi
pkgs=()
command -v fio >/dev/null || pkgs+=(fio)
command -v python3 >/dev/null || pkgs+=(python3)
[ -f /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c ] || pkgs+=(libfuse3-dev)
command -v pkg-config >/dev/null || pkgs+=(pkg-config)
command -v gcc >/dev/null || pkgs+=(gcc)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]} ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; }
fi
"$here/wcfs" --version >/dev/null   # builds if needed
mkdir -p "$results"
csv="$results/bench-coldread.csv"

work=$(mktemp -d /var/tmp/wcfs-bench-cold.XXXXXX)
cache=$(mktemp -d /dev/shm/wcfs-bench-cold-cache.XXXXXX)
export PMEM_IS_PMEM_FORCE=1
mkdir -p "$work/backing" "$work/wcfs" "$work/fuse"
pt_pid=""
cleanup() {
  set +e
  grep -q " $work/wcfs " /proc/mounts && "$here/wcfs" umount "$work/wcfs" >/dev/null 2>&1
  grep -q " $work/wcfs " /proc/mounts && fusermount -u -z "$work/wcfs"
  grep -q " $work/fuse " /proc/mounts && fusermount3 -u -z "$work/fuse"
  [ -n "$pt_pid" ] && kill "$pt_pid" 2>/dev/null
  rm -rf "$work" "$cache"
}
trap cleanup EXIT INT TERM

echo "== writing a $SIZE file in the backing directory" >&2
fio --name=data --directory="$work/backing" --filename=data.bin --size="$SIZE" --bs=1M \
  --rw=write --ioengine=psync --end_fsync=1 >/dev/null
"$here/wcfs" mount --cache-size 512M "$cache" "$work/backing" "$work/wcfs" >/dev/null
gcc -O2 -Wall /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c -o "$work/passthrough_ll" \
  $(pkg-config fuse3 --cflags --libs)
"$work/passthrough_ll" -o source="$work/backing" -f "$work/fuse" >/dev/null 2>&1 &
pt_pid=$!
for _ in $(seq 100); do grep -q " $work/fuse " /proc/mounts && break; sleep 0.1; done
grep -q " $work/fuse " /proc/mounts || { echo "passthrough_ll did not mount" >&2; exit 1; }

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
fio_run() { # dir kind(iops|bw) fio-args... -> IOPS, or MiB/s for kind bw
  local d=$1 kind=$2; shift 2
  timeout $((T * 3 + 120)) fio --name=r --directory="$d" --filename=data.bin --size="$SIZE" \
    --ioengine=psync --time_based --runtime="$T" --group_reporting --invalidate=1 \
    --output-format=json "$@" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["jobs"][0]["read"]
print(round(r["iops"]) if sys.argv[1] == "iops" else round(r["bw_bytes"] / 1048576, 1))' "$kind"
}
workload() { # name dir -> value
  case "$1" in
    cold-rand4k-1) drop; fio_run "$2" iops --rw=randread --bs=4k --numjobs=1;;
    cold-rand4k-4) # each job in its own quarter of the file: every read is a miss, none
      # finds a page another job already brought in (that measured how fast the page cache
      # filled, not the reads the cache cannot answer)
      drop; fio_run "$2" iops --rw=randread --bs=4k --numjobs=4 --size="$QUARTER" \
        --offset_increment="$QUARTER";;
    cold-seq1m-1) drop; fio_run "$2" bw --rw=read --bs=1M --numjobs=1;;
    warm-rand4k-1)
      cat "$work/backing/data.bin" > /dev/null
      fio_run "$2" iops --rw=randread --bs=4k --numjobs=1;;
  esac
}
WORKLOADS="cold-rand4k-1 cold-rand4k-4 cold-seq1m-1 warm-rand4k-1"
echo "round,workload,setup,value" > "$csv"
for round in $(seq "$ROUNDS"); do
  for w in $WORKLOADS; do
    # Alternate which setup goes first, so drift in the disk's speed does not favour one.
    if [ $((round % 2)) = 1 ]; then order="wcfs fuse"; else order="fuse wcfs"; fi
    declare -A v=()
    for s in $order; do
      v[$s]=$(workload "$w" "$work/$s")
      echo "$round,$w,$s,${v[$s]}" >> "$csv"
    done
    python3 -c 'import sys; w, f = float(sys.argv[3]), float(sys.argv[4]); print(f"round {sys.argv[1]} {sys.argv[2]:14} wcfs {w:>9.1f}  passthrough_ll {f:>9.1f}  wcfs/fuse {w / f if f else 0:.2f}x")' \
      "$round" "$w" "${v[wcfs]}" "${v[fuse]}" >&2
    unset v
  done
done
python3 - "$csv" "$results/bench-coldread.txt" "$T" "$SIZE" <<'EOF'
import csv, datetime, os, statistics, sys
rows = {}
for r in csv.DictReader(open(sys.argv[1])):
    rows.setdefault((r["workload"], r["setup"]), []).append(float(r["value"]))
ratios = {}
for (w, s), vals in rows.items():
    if s == "wcfs":
        f = rows.get((w, "fuse"), [])
        ratios[w] = [a / b for a, b in zip(vals, f) if b]
out = [f"# cold reads: wcfs vs passthrough_ll over one backing directory - {datetime.date.today()},"
       f" {os.cpu_count()} cores, {sys.argv[4]} file, fio {sys.argv[3]} s per run,"
       f" median [range] over {len(next(iter(rows.values())))} rounds",
       f"{'workload':16} {'unit':6} {'wcfs':>22} {'passthrough_ll':>22} {'wcfs/fuse':>18}"]
fmt = lambda v: f"{statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}]"
for w in ["cold-rand4k-1", "cold-rand4k-4", "cold-seq1m-1", "warm-rand4k-1"]:
    if (w, "wcfs") not in rows:
        continue
    r = ratios[w]
    out.append(f"{w:16} {'MiB/s' if 'seq' in w else 'IOPS':6} {fmt(rows[(w, 'wcfs')]):>22}"
               f" {fmt(rows[(w, 'fuse')]):>22}"
               f" {statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]")
text = "\n".join(out)
print(text)
open(sys.argv[2], "w").write(text + "\n")
EOF
