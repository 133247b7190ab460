#!/usr/bin/env bash
# wcfs's real use case, side by side in one run: a GlusterFS volume (single node, brick in a
# temporary directory on this machine, mounted over loopback) against a wcfs mount over a
# directory of that same volume (cache on tmpfs with PMEM_IS_PMEM_FORCE=1: durability
# SIMULATED, a stand-in for pmem; pass --cache-dir DIR to put the cache on a disk instead).
#   fio   4 KiB random writes, fsync after each, 1 job, psync, a 64 MiB file
# Prints IOPS and fsync latency p50 of each, and the ratio wcfs/plain, per round; then how
# long `wcfs flush` took to write everything back to the volume.
# Numbers mean something only on a quiet machine: the load average is printed with them.
#
#   examples/bench-gluster.sh [SECONDS_PER_RUN] [ROUNDS] [--cache-dir DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
T="${1:-20}"
ROUNDS="${2:-2}"
cache_dir=""
if [ "${3:-}" = "--cache-dir" ]; then cache_dir="$4"; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: it starts glusterd and mounts" >&2
  exit 1
fi
missing=()
command -v fio >/dev/null || missing+=(fio)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/sbin/glusterd ] || missing+=(glusterfs-server)
[ -x /usr/sbin/mount.glusterfs ] || missing+=(glusterfs-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
"$here/wcfs" --version >/dev/null   # builds if needed

work=$(mktemp -d /var/tmp/wcfs-bench-gl.XXXXXX)
if [ -n "$cache_dir" ]; then
  cache=$(mktemp -d "$cache_dir/wcfs-bench-gl-cache.XXXXXX")
else
  cache=$(mktemp -d /dev/shm/wcfs-bench-gl-cache.XXXXXX)
  export PMEM_IS_PMEM_FORCE=1
fi
vol="wcfsbench$$"
host=$(cat /proc/sys/kernel/hostname)   # GlusterFS refuses 127.0.0.1 as a brick host
mkdir -p "$work/gl" "$work/wcfs"
started_glusterd=""
volume_made=""
cleanup() {
  set +e
  grep -q " $work/wcfs " /proc/mounts && timeout 600 "$here/wcfs" umount "$work/wcfs" >/dev/null 2>&1
  grep -q " $work/wcfs " /proc/mounts && fusermount -u -z "$work/wcfs"
  grep -q " $work/gl " /proc/mounts && { timeout 60 umount "$work/gl" || umount -l "$work/gl"; }
  if [ -n "$volume_made" ]; then
    timeout 60 gluster --mode=script volume stop "$vol" force >/dev/null 2>&1
    timeout 60 gluster --mode=script volume delete "$vol" >/dev/null 2>&1
  fi
  [ -n "$started_glusterd" ] && kill "$(cat "$work/glusterd.pid")" 2>/dev/null
  rm -rf "$work" "$cache"
}
trap cleanup EXIT INT TERM

if ! timeout 15 gluster --mode=script volume list >/dev/null 2>&1; then
  glusterd -p "$work/glusterd.pid"
  started_glusterd=1
  for _ in $(seq 150); do
    timeout 15 gluster --mode=script volume list >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
timeout 60 gluster --mode=script volume create "$vol" "$host:$work/brick" force >/dev/null
volume_made=1
timeout 60 gluster --mode=script volume start "$vol" >/dev/null
timeout 60 mount -t glusterfs "$host:/$vol" "$work/gl"
mkdir -p "$work/gl/plain" "$work/gl/viawcfs"
"$here/wcfs" mount --cache-size 1G "$cache" "$work/gl/viawcfs" "$work/wcfs" >/dev/null

run() { # dir -> "IOPS FSYNC_P50_US"
  fio --name=randwrite --directory="$1" --filename=bench.fio --rw=randwrite --bs=4k \
      --size=64M --fsync=1 --ioengine=psync --numjobs=1 --time_based --runtime="$T" \
      --output-format=json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
p50 = j["sync"]["lat_ns"].get("percentile", {}).get("50.000000", 0) / 1000
print("%.0f %.0f" % (j["write"]["iops"], p50))'
}

echo "GlusterFS volume $vol (brick $host:$work/brick, one node, loopback) vs wcfs over it;"
echo "fio 4 KiB random write + fsync, 1 job, ${T}s per run; cache ${cache_dir:-on tmpfs (pmem stand-in)}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %14s %14s %14s %14s %8s\n' round "plain IOPS" "fsync p50 us" "wcfs IOPS" "fsync p50 us" ratio
for r in $(seq "$ROUNDS"); do
  read -r p_iops p_p50 < <(run "$work/gl/plain")
  read -r w_iops w_p50 < <(run "$work/wcfs")
  ratio=$(python3 -c "print('%.1f' % ($w_iops / max($p_iops, 1)))")
  printf '%-6s %14s %14s %14s %14s %7sx\n' "$r" "$p_iops" "$p_p50" "$w_iops" "$w_p50" "$ratio"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "writeback of wcfs's cache to the volume: $("$here/wcfs" flush "$work/wcfs" 2>&1 | sed 's/^wcfs: //')"
