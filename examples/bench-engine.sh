#!/usr/bin/env bash
# Engine benchmark (issue 2): flush strategies, write+commit latency/IOPS and device flushes
# per commit, index heap per block and recovery time of a 1M-block cache. Cache files on tmpfs
# with PMEM_IS_PMEM_FORCE=1; the msync strategy is also run with the cache file on a disk.
#   examples/bench-engine.sh [BLOCKS] [DISK_DIR]
#     BLOCKS    default 1048576 blocks = 4 GiB of tmpfs
#     DISK_DIR  a directory on a real disk for the msync run (default /var/tmp; none: skip)
#   QUICK=1 examples/bench-engine.sh      1 s runs, no full-cache part (checks the script)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
blocks="${1:-1048576}"
disk="${2:-/var/tmp}"
cd "$here"
[ -f examples/target/classpath.txt ] || mvn -q -B -DskipTests package >&2
mkdir -p examples/results
cache_dir=$(mktemp -d /dev/shm/wcfs-bench.XXXXXX)
backing_dir=$(mktemp -d /tmp/wcfs-bench-backing.XXXXXX)
disk_dir=""
[ "$disk" != none ] && disk_dir=$(mktemp -d "$disk/wcfs-bench-disk.XXXXXX")
trap 'rm -rf "$cache_dir" "$backing_dir" ${disk_dir:+"$disk_dir"}' EXIT
out=examples/results/engine.txt
[ "${QUICK:-0}" = 1 ] && out=/tmp/wcfs-engine-quick.txt  # not a result to keep
echo "# load before the run: $(cut -d' ' -f1-3 /proc/loadavg)" > "$out"
PMEM_IS_PMEM_FORCE=1 java -Xmx2g -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -Dwcfs.bench.quick="$([ "${QUICK:-0}" = 1 ] && echo true || echo false)" \
  -cp "examples/target/classes:$(cat examples/target/classpath.txt)" \
  io.wcfs.examples.EngineBench "$cache_dir" "$backing_dir" "$blocks" $disk_dir \
  | tee -a "$out"
