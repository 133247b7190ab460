#!/usr/bin/env bash
# Side-by-side benchmark (issue 4): fio, SQLite and PostgreSQL on
#   plain  - the backing directory on disk
#   wcfs   - a wcfs mount over it, cache on tmpfs with PMEM_IS_PMEM_FORCE=1 (stand-in for pmem:
#            durability is SIMULATED in this benchmark)
#   fuse   - libfuse's passthrough_ll example over the same directory (reference FUSE cost)
# and, for the fsync-bound clients (fio write+fsync, SQLite, pgbench), two bounds that no
# durable setup can beat on this machine:
#   tmpfs      - a directory on tmpfs: no disk, fsync free (the best any write cache can do)
#   fuse-tmpfs - passthrough_ll over that tmpfs directory: free storage, but every request
#                pays the FUSE round trip (the best any FUSE-based write cache can do)
# Prints one table with ratios to plain, writes examples/results/bench.csv and bench.png.
# Then the "SSD cache" setup: wcfs with its cache file on the same disk as the plain directory
# (under /var/tmp, real durability, strategy msync), fio 4 KiB random write + fsync with 1 and
# 4 jobs, plain vs wcfs, with passthrough_ll over the same disk as the reference for what any
# FUSE filesystem gets here; the fsync p99s and the device flushes per commit (wcfs writes the
# 1-job run back before the 4-job run, timed); its own table,
# examples/results/bench-ssd.csv and bench-ssd.txt.
#
#   examples/bench-databases.sh [SECONDS_PER_FIO_RUN] [PGBENCH_SECONDS]
#   examples/bench-databases.sh --ssd [SECONDS_PER_FIO_RUN]     only the SSD cache setup
# WCFS_MOUNT_OPTS="--fuse-transport uring" (for example) adds options to the main wcfs mount.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
SSD_ONLY=0
if [ "${1:-}" = --ssd ]; then SSD_ONLY=1; shift; fi
FIO_T="${1:-10}"
PG_T="${2:-30}"
results="$here/examples/results"
mkdir -p "$results"
csv="$results/bench.csv"

if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: it installs packages, mounts, and starts PostgreSQL as user postgres" >&2
  exit 1
fi
pkgs=()
command -v fio >/dev/null || pkgs+=(fio)
[ -f /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c ] || pkgs+=(libfuse3-dev)
command -v pkg-config >/dev/null || pkgs+=(pkg-config)
command -v gcc >/dev/null || pkgs+=(gcc)
if [ "$SSD_ONLY" = 0 ]; then
  command -v sqlite3 >/dev/null || pkgs+=(sqlite3)
  ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || pkgs+=(postgresql)
  command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]} ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; }
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
"$here/wcfs" --version >/dev/null   # builds if needed

work=$(mktemp -d /var/tmp/wcfs-bench.XXXXXX)
cache=$(mktemp -d /dev/shm/wcfs-bench-cache.XXXXXX)
bound=$(mktemp -d /dev/shm/wcfs-bench-bound.XXXXXX)
pt_src="/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"
gcc -O2 -Wall "$pt_src" -o "$work/passthrough_ll" $(pkg-config fuse3 --cflags --libs)
mkdir -p "$work/backing" "$work/wcfs" "$work/fuse" "$work/pgsock" "$work/fuse-tmpfs"
chmod 755 "$bound"
[ "$SSD_ONLY" = 1 ] || chown postgres "$work/pgsock"
chmod 755 "$work"
export PMEM_IS_PMEM_FORCE=1
pt_pid=""
rss_pid=""

cleanup() {
  set +e
  for d in "$work/wcfs" "$work/fuse" "$work/fuse-tmpfs"; do
    for pgd in "$d/pg" "$work/backing/pg" "$bound/pg"; do
      [ -f "$pgd/postmaster.pid" ] && su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $pgd -m immediate stop" >/dev/null 2>&1
    done
  done
  grep -q " $work/wcfs " /proc/mounts && "$here/wcfs" umount "$work/wcfs" >/dev/null 2>&1
  grep -q " $work/wcfs " /proc/mounts && fusermount -u -z "$work/wcfs"
  grep -q " $work/fuse " /proc/mounts && fusermount3 -u -z "$work/fuse"
  grep -q " $work/fuse-tmpfs " /proc/mounts && fusermount3 -u -z "$work/fuse-tmpfs"
  [ -n "$pt_pid" ] && kill "$pt_pid" 2>/dev/null
  [ -n "$rss_pid" ] && kill "$rss_pid" 2>/dev/null
  rm -rf "$work" "$cache" "$bound"
}
trap cleanup EXIT INT TERM

mount_wcfs() {
  # shellcheck disable=SC2086 # WCFS_MOUNT_OPTS: more mount options, word-split on purpose
  "$here/wcfs" mount --cache-size 2G -o allow_other ${WCFS_MOUNT_OPTS:-} "$cache" "$work/backing" \
    "$work/wcfs" >/dev/null
}
mount_fuse() { # source mountpoint
  "$work/passthrough_ll" -o source="$1",allow_other -f "$2" >/dev/null 2>&1 &
  pt_pid=$!
  for _ in $(seq 100); do grep -q " $2 " /proc/mounts && return; sleep 0.1; done
  echo "passthrough_ll did not mount" >&2; exit 1
}
unmount_fuse() {
  fusermount3 -u "$1"; wait "$pt_pid" 2>/dev/null || true; pt_pid=""
}
dir_of() {
  case "$1" in
    plain) echo "$work/backing";; wcfs) echo "$work/wcfs";; fuse) echo "$work/fuse";;
    tmpfs) echo "$bound";; fuse-tmpfs) echo "$work/fuse-tmpfs";;
  esac
}

[ "$SSD_ONLY" = 1 ] || echo "setup,metric,value" > "$csv"
record() { echo "$1,$2,$3" >> "$csv"; }

# ---- fio -------------------------------------------------------------------------------------
fio_json() { # dir name extra-args...
  local d=$1 name=$2; shift 2
  # No --filename: each job gets its own file (name.JOB.0), as each database backend would.
  timeout $((FIO_T * 3 + 120)) fio --name="$name" --directory="$d" \
    --size=256M --bs=4k --ioengine=psync --time_based --runtime="$FIO_T" --group_reporting \
    --output-format=json "$@" 2>/dev/null
}
fio_field() { # json-on-stdin kind(read|write|sync) field
  python3 -c '
import json,sys
j=json.load(sys.stdin)["jobs"][0]; kind, field = sys.argv[1], sys.argv[2]
if field == "iops": print(round(j[kind]["iops"]))
elif field == "bw": print(round(j[kind]["bw_bytes"]/1e6,1))
else:
  p = j["sync"]["lat_ns"].get("percentile", {})
  key = {"p50":"50.000000","p99":"99.000000"}[field]
  print(round(p.get(key, 0)/1000, 1))' "$@"
}
wcfs_pid() {
  "$here/wcfs" status --json "$work/wcfs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'
}
# Peak anonymous RSS (heap, stacks, native buffers) of the daemon, sampled while fio runs. The
# mapped cache file is not counted: those pages belong to the cache medium, not the process.
start_rss_sampler() {
  local pid; pid=$(wcfs_pid)
  ( peak=0; while kill -0 "$pid" 2>/dev/null; do
      a=$(awk '/RssAnon/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
      [ "${a:-0}" -gt "$peak" ] && peak=$a && echo $((peak / 1024)) > "$work/rss.peak"
      sleep 0.2; done ) &
  rss_pid=$!
}

run_fio() { # setup
  local s=$1 d; d=$(dir_of "$s")
  local j
  [ "$s" = wcfs ] && start_rss_sampler
  j=$(fio_json "$d" fsync1 --rw=randwrite --fsync=1 --numjobs=1)
  record "$s" fio_fsync_1job_iops "$(echo "$j" | fio_field write iops)"
  record "$s" fio_fsync_1job_p50_us "$(echo "$j" | fio_field sync p50)"
  record "$s" fio_fsync_1job_p99_us "$(echo "$j" | fio_field sync p99)"
  j=$(fio_json "$d" fsync4 --rw=randwrite --fsync=1 --numjobs=4 --size=64M)
  record "$s" fio_fsync_4jobs_iops "$(echo "$j" | fio_field write iops)"
  record "$s" fio_fsync_4jobs_p99_us "$(echo "$j" | fio_field sync p99)"
  case "$s" in tmpfs|fuse-tmpfs) rm -f "$d"/fsync1.* "$d"/fsync4.*; return;; esac
  j=$(fio_json "$d" nofsync --rw=randwrite)
  record "$s" fio_randwrite_iops "$(echo "$j" | fio_field write iops)"
  j=$(fio_json "$d" seq --rw=write --bs=1M --size=1G)
  record "$s" fio_seqwrite_1M_MBps "$(echo "$j" | fio_field write bw)"
  j=$(fio_json "$d" nofsync --rw=randread --invalidate=1)
  record "$s" fio_randread_cached_iops "$(echo "$j" | fio_field read iops)"
  if [ "$s" = wcfs ]; then
    "$here/wcfs" flush "$work/wcfs" >/dev/null
  fi
  j=$(fio_json "$d" nofsync --rw=randread --invalidate=1)
  record "$s" fio_randread_writtenback_iops "$(echo "$j" | fio_field read iops)"
  if [ "$s" = wcfs ]; then
    kill "$rss_pid" 2>/dev/null || true
    record wcfs daemon_peak_anon_rss_MiB "$(cat "$work/rss.peak" 2>/dev/null || echo 0)"
  fi
  rm -f "$d"/fsync1.* "$d"/fsync4.* "$d"/nofsync.* "$d"/seq.*
}

# ---- SQLite ------------------------------------------------------------------------------------
run_sqlite() { # setup
  local s=$1 d; d=$(dir_of "$s")
  for mode in wal delete; do
    local n=2000 db="$d/bench-$mode.db" t0 t1
    rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    {
      echo "PRAGMA journal_mode=$mode; PRAGMA synchronous=FULL;"
      echo "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
      for i in $(seq $n); do echo "BEGIN; INSERT INTO t(v) VALUES('row $i'); COMMIT;"; done
    } > "$work/sqlite.sql"
    t0=$(date +%s.%N)
    timeout 600 sqlite3 "$db" < "$work/sqlite.sql" >/dev/null
    t1=$(date +%s.%N)
    record "$s" "sqlite_${mode}_tps" "$(python3 -c "print(round($n/($t1-$t0)))")"
    rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
  done
}

# ---- PostgreSQL --------------------------------------------------------------------------------
run_pg() { # setup
  local s=$1 d; d=$(dir_of "$s")
  local pgd="$d/pg"
  mkdir -p "$pgd" && chown postgres "$pgd" && chmod 700 "$pgd"
  su postgres -s /bin/sh -c "$pgbin/initdb -D $pgd -A trust >/dev/null"
  su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $pgd -w -l $work/pgsock/pg-$s.log -o '-k $work/pgsock -c listen_addresses= -c synchronous_commit=on -c fsync=on' start >/dev/null"
  su postgres -s /bin/sh -c "$pgbin/pgbench -h $work/pgsock -i -s 10 postgres >/dev/null 2>&1"
  local out
  out=$(su postgres -s /bin/sh -c "timeout $((PG_T + 120)) $pgbin/pgbench -h $work/pgsock -c 4 -j 2 -T $PG_T postgres 2>/dev/null")
  record "$s" pgbench_tps "$(echo "$out" | awk '/^tps/ {print int($3); exit}')"
  record "$s" pgbench_latency_ms "$(echo "$out" | awk '/latency average/ {print $4}')"
  su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $pgd -m fast stop >/dev/null"
  rm -rf "$pgd"
}

# ---- writeback drain and mount of a full cache (wcfs only) ------------------------------------
# Both timed writes start from the same state: source data in tmpfs, page cache dropped. On a
# VM whose host reclaims free guest memory, whichever run allocates fresh page-cache pages
# pays for it, so the plain write is timed before and after the drain and the faster counts.
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
plain_write() {
  drop_caches
  local t0 t1; t0=$(date +%s.%N)
  dd if="$cache/rand.bin" of="$work/backing/plain.bin" bs=1M conv=fsync status=none
  t1=$(date +%s.%N)
  rm -f "$work/backing/plain.bin"
  python3 -c "print(round(1073.741824/($t1-$t0)))"
}
run_drain() {
  "$here/wcfs" umount "$work/wcfs" >/dev/null
  rm -rf "$cache"/*
  dd if=/dev/urandom of="$cache/rand.bin" bs=1M count=1024 status=none
  local plain1 plain2
  plain1=$(plain_write)
  "$here/wcfs" mount --cache-size 1400M --high-watermark 100 --low-watermark 100 \
    "$cache/c" "$work/backing" "$work/wcfs" >/dev/null
  dd if="$cache/rand.bin" of="$work/wcfs/drain.bin" bs=1M conv=fsync status=none
  local t0 t1 pid
  # Mount of a full cache: kill the daemon, time a remount (recovery of 262144 blocks).
  pid=$("$here/wcfs" status --json "$work/wcfs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
  kill -9 "$pid"; sleep 0.5; fusermount -u -z "$work/wcfs"
  t0=$(date +%s.%N)
  "$here/wcfs" mount --high-watermark 100 --low-watermark 100 "$cache/c" "$work/backing" \
    "$work/wcfs" >/dev/null
  t1=$(date +%s.%N)
  record wcfs mount_full_1GiB_cache_s "$(python3 -c "print(round($t1-$t0,2))")"
  # The daemon times the drain itself (from the flush request until the cache is clean), so
  # the flush client's JVM start-up is not counted against it.
  drop_caches
  local out
  out=$("$here/wcfs" flush "$work/wcfs" 2>/dev/null)
  record wcfs writeback_drain_MBps "$(echo "$out" | sed -n 's/.*, \([0-9]*\) MB\/s).*/\1/p')"
  cmp "$cache/rand.bin" "$work/backing/drain.bin"
  rm -f "$work/wcfs/drain.bin"
  plain2=$(plain_write)
  record plain writeback_drain_MBps "$(( plain1 > plain2 ? plain1 : plain2 ))"
  rm -f "$cache/rand.bin"
}

# ---- SSD cache: the cache file on the same disk as the plain directory ------------------------
# $work is under /var/tmp, so the cache file ($work/ssd-cache/wcfs.cache) and the backing
# directory share one disk; PMEM_IS_PMEM_FORCE is dropped for this mount, so libpmem sees a
# page-cache mapping and commits are real fdatasyncs (strategy msync, durability real).
ssd_csv="$results/bench-ssd.csv"
ssd_record() { echo "$1,$2,$3" >> "$ssd_csv"; }
status_field() { # field
  "$here/wcfs" status --json "$work/wcfs" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
# fio 4 KiB write+fsync with 1 and 4 jobs in DIR, recorded for SETUP (plain, fuse).
ssd_fio() { # setup dir
  local j s=$1 d=$2
  j=$(fio_json "$d" ssd1 --rw=randwrite --fsync=1 --numjobs=1)
  ssd_record "$s" fio_fsync_1job_iops "$(echo "$j" | fio_field write iops)"
  ssd_record "$s" fsync_1job_p50_us "$(echo "$j" | fio_field sync p50)"
  ssd_record "$s" fsync_1job_p99_us "$(echo "$j" | fio_field sync p99)"
  j=$(fio_json "$d" ssd4 --rw=randwrite --fsync=1 --numjobs=4 --size=64M)
  ssd_record "$s" fio_fsync_4jobs_iops "$(echo "$j" | fio_field write iops)"
  ssd_record "$s" fsync_4jobs_p99_us "$(echo "$j" | fio_field sync p99)"
  rm -f "$d"/ssd1.* "$d"/ssd4.*
}
run_ssd() {
  echo "setup,metric,value" > "$ssd_csv"
  ssd_record all load_before "$(cut -d' ' -f1 /proc/loadavg)"
  local j d
  echo "== SSD cache: plain directory" >&2
  ssd_fio plain "$work/backing"
  # The reference for what a FUSE filesystem can do here at all: passthrough_ll forwards
  # each write and fsync to the same disk and does nothing else.
  echo "== SSD cache: passthrough_ll over the same disk" >&2
  mount_fuse "$work/backing" "$work/fuse"
  ssd_fio fuse "$work/fuse"
  unmount_fuse "$work/fuse"
  echo "== SSD cache: wcfs, cache file on the same disk" >&2
  mkdir -p "$work/ssd-cache"
  env -u PMEM_IS_PMEM_FORCE "$here/wcfs" mount --cache-size 1G "$work/ssd-cache" \
    "$work/backing" "$work/wcfs" >/dev/null
  local backend; backend=$(status_field backend)
  echo "   backend: $backend" >&2
  case "$backend" in
    *"strategy msync"*"page-cache mapping, durability real"*) ;;
    *) echo "the SSD cache mount is not a real page-cache cache: $backend" >&2; exit 1;;
  esac
  local c0 f0 c1 f1 c2 f2
  c0=$(status_field flushes); f0=$(status_field device_flushes)
  d="$work/wcfs"
  j=$(fio_json "$d" ssd1 --rw=randwrite --fsync=1 --numjobs=1)
  c1=$(status_field flushes); f1=$(status_field device_flushes)
  ssd_record wcfs fio_fsync_1job_iops "$(echo "$j" | fio_field write iops)"
  ssd_record wcfs fsync_1job_p50_us "$(echo "$j" | fio_field sync p50)"
  ssd_record wcfs fsync_1job_p99_us "$(echo "$j" | fio_field sync p99)"
  ssd_record wcfs commit_1job_p50_us "$(status_field commit_latency_p50_us)"
  ssd_record wcfs commit_1job_p99_us "$(status_field commit_latency_p99_us)"
  ssd_record wcfs device_flushes_per_commit_1job \
    "$(python3 -c "print(round(($f1 - $f0) / max(1, $c1 - $c0), 2))")"
  # The plain run leaves nothing to do behind it; wcfs leaves the 1-job run's blocks to write
  # back. Drain them first (timed: that is the deferred cost, in its own row), so that the
  # 4-job run does not compete with the first run's writeback for the same disk.
  local t0 t1
  t0=$(date +%s.%N)
  "$here/wcfs" flush "$work/wcfs" >/dev/null
  t1=$(date +%s.%N)
  ssd_record wcfs writeback_after_1job_s "$(python3 -c "print(round($t1 - $t0, 1))")"
  c1=$(status_field flushes); f1=$(status_field device_flushes)
  j=$(fio_json "$d" ssd4 --rw=randwrite --fsync=1 --numjobs=4 --size=64M)
  c2=$(status_field flushes); f2=$(status_field device_flushes)
  ssd_record wcfs fio_fsync_4jobs_iops "$(echo "$j" | fio_field write iops)"
  ssd_record wcfs fsync_4jobs_p99_us "$(echo "$j" | fio_field sync p99)"
  ssd_record wcfs device_flushes_per_commit_4jobs \
    "$(python3 -c "print(round(($f2 - $f1) / max(1, $c2 - $c1), 2))")"
  rm -f "$d"/ssd1.* "$d"/ssd4.*
  "$here/wcfs" umount "$work/wcfs" >/dev/null
  ssd_record all load_after "$(cut -d' ' -f1 /proc/loadavg)"
  python3 - "$ssd_csv" "$results/bench-ssd.txt" "$FIO_T" <<'PY'
import csv, datetime, os, sys
rows = {}
for r in csv.DictReader(open(sys.argv[1])):
    rows.setdefault(r["metric"], {})[r["setup"]] = float(r["value"] or 0)
g = lambda m, s: rows.get(m, {}).get(s)
out = [f"# SSD cache: wcfs with its cache file on the plain directory's disk - "
       f"{datetime.date.today()}, {os.cpu_count()} cores, fio {sys.argv[3]} s per run, load "
       f"{g('load_before', 'all')} before, {g('load_after', 'all')} after",
       f"{'metric':34} {'plain':>9} {'wcfs':>9} {'wcfs/plain':>10} {'pt_ll':>9}"
       f" {'pt_ll/plain':>11} {'wcfs/pt_ll':>10}  target"]
def line(m, target, lower=False):
    p, w, t = g(m, "plain"), g(m, "wcfs"), g(m, "fuse")
    ratio = lambda a, b: f"{a / b:.2f}x" if a is not None and b else "-"
    f = lambda x: "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")
    out.append(f"{m:34} {f(p):>9} {f(w):>9} {ratio(w, p):>10} {f(t):>9} {ratio(t, p):>11}"
               f" {ratio(w, t):>10}  {target}")
line("fio_fsync_1job_iops", ">= 0.9x plain")
line("fio_fsync_4jobs_iops", ">= 1.5x plain")
line("fsync_1job_p50_us", "", True)
line("fsync_1job_p99_us", "<= 2x plain", True)
line("fsync_4jobs_p99_us", "", True)
p99 = g("fsync_1job_p99_us", "plain")
c99 = g("commit_1job_p99_us", "wcfs")
out.append(f"{'wcfs commit p99 (daemon), 1 job':34} {'':>9} {c99 or 0:>9.0f} "
           f"{(c99 / p99 if p99 and c99 else 0):>9.2f}x  <= 2x plain fsync p99")
out.append(f"{'writeback of the 1-job run, s':34} {'':>9} "
           f"{g('writeback_after_1job_s', 'wcfs') or 0:>9.1f}  (drained before the 4-job run)")
out.append(f"{'device flushes per commit, 1 job':34} {'':>9} "
           f"{g('device_flushes_per_commit_1job', 'wcfs') or 0:>9.2f}")
out.append(f"{'device flushes per commit, 4 jobs':34} {'':>9} "
           f"{g('device_flushes_per_commit_4jobs', 'wcfs') or 0:>9.2f}")
text = "\n".join(out)
print(text)
open(sys.argv[2], "w").write(text + "\n")
PY
}

if [ "$SSD_ONLY" = 1 ]; then
  run_ssd
  exit 0
fi

echo "== plain directory" >&2
run_fio plain; run_sqlite plain; run_pg plain
echo "== wcfs" >&2
mount_wcfs
run_fio wcfs; run_sqlite wcfs; run_pg wcfs
run_drain
"$here/wcfs" umount "$work/wcfs" >/dev/null
echo "== passthrough_ll" >&2
mount_fuse "$work/backing" "$work/fuse"
run_fio fuse; run_sqlite fuse; run_pg fuse
unmount_fuse "$work/fuse"
echo "== bounds: tmpfs, passthrough_ll over tmpfs" >&2
run_fio tmpfs; run_sqlite tmpfs; run_pg tmpfs
mount_fuse "$bound" "$work/fuse-tmpfs"
run_fio fuse-tmpfs; run_sqlite fuse-tmpfs; run_pg fuse-tmpfs
unmount_fuse "$work/fuse-tmpfs"

# ---- report ------------------------------------------------------------------------------------
"$here/examples/bench-report.py" "$results"
echo
run_ssd
