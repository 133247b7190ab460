#!/usr/bin/env bash
# A/B of the FUSE transports (issue 16): fio 4 KiB random write + fsync, 1 job and 4 jobs,
# /dev/fuse against io_uring, same build, same mount setup (cache on tmpfs with
# PMEM_IS_PMEM_FORCE=1, backing under /var/tmp), alternating order over ROUNDS rounds.
# Also the daemon's CPU per FUSE request (utime+stime of the daemon over fuse_requests).
# Holds /tmp/bench.lock while it runs (waits for it first).
#
#   examples/bench-fuse-transport.sh [SECONDS_PER_RUN] [ROUNDS] [MOUNT OPTION...]   CSV on stdout
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# the jar as built (mvn -pl fs -am package), not the launcher, which may rebuild
wcfs() { java -jar "$here/fs/target/wcfs.jar" "$@"; }
T=${1:-5}
ROUNDS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
extra=("$@") # e.g. --spin-us 0
while [ -e /tmp/bench.lock ]; do sleep 10; done
touch /tmp/bench.lock
work=$(mktemp -d /var/tmp/wcfs-uring-bench.XXXXXX)
cache=$(mktemp -d /dev/shm/wcfs-uring-bench.XXXXXX)
mkdir -p "$work/backing" "$work/m"
export PMEM_IS_PMEM_FORCE=1
cleanup() {
  set +e
  grep -q " $work/m " /proc/mounts && wcfs umount "$work/m" >/dev/null 2>&1
  grep -q " $work/m " /proc/mounts && fusermount -u -z "$work/m"
  rm -rf "$work" "$cache"
  rm -f /tmp/bench.lock
}
trap cleanup EXIT

status_field() { # field
  wcfs status --json "$work/m" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
cpu_ticks() { # pid: utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)
echo "round,transport,jobs,iops,sync_p50_us,sync_p99_us,daemon_cpu_us_per_request,requests"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="dev uring"; else order="uring dev"; fi
  for tr in $order; do
    wcfs mount --cache-size 1G --fuse-transport "$tr" ${extra[@]+"${extra[@]}"} "$cache" "$work/backing" "$work/m" >/dev/null
    pid=$(status_field pid)
    for jobs in 1 4; do
      r0=$(status_field fuse_requests)
      c0=$(cpu_ticks "$pid")
      j=$(timeout $((T * 3 + 60)) fio --name=f$jobs --directory="$work/m" --size=64M --bs=4k \
        --ioengine=psync --rw=randwrite --fsync=1 --numjobs=$jobs --time_based --runtime="$T" \
        --group_reporting --output-format=json 2>/dev/null)
      c1=$(cpu_ticks "$pid")
      r1=$(status_field fuse_requests)
      echo "$j" | python3 -c '
import json,sys
j=json.load(sys.stdin)["jobs"][0]
rnd,tr,jobs,c0,c1,r0,r1,hz = sys.argv[1:]
p=j["sync"]["lat_ns"].get("percentile",{})
req=int(r1)-int(r0)
cpu=(int(c1)-int(c0))*1e6/int(hz)
p50=p.get("50.000000",0)/1000
p99=p.get("99.000000",0)/1000
iops=round(j["write"]["iops"])
print("%s,%s,%s,%d,%.1f,%.1f,%.2f,%d" % (rnd,tr,jobs,iops,p50,p99,cpu/max(req,1),req))' \
        "$round" "$tr" "$jobs" "$c0" "$c1" "$r0" "$r1" "$hz"
      rm -f "$work/m"/f$jobs.*
    done
    wcfs umount "$work/m" >/dev/null
  done
done
