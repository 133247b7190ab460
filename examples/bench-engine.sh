#!/usr/bin/env bash
# Engine benchmark (issue 2): flush strategies, write+commit latency/IOPS, index heap per block
# and recovery time of a 1M-block cache. Cache files on tmpfs with PMEM_IS_PMEM_FORCE=1.
#   examples/bench-engine.sh [BLOCKS]     (default 1048576 blocks = 4 GiB of tmpfs)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
blocks="${1:-1048576}"
cd "$here"
[ -f examples/target/classpath.txt ] || mvn -q -B -DskipTests package >&2
mkdir -p examples/results
cache_dir=$(mktemp -d /dev/shm/wcfs-bench.XXXXXX)
backing_dir=$(mktemp -d /tmp/wcfs-bench-backing.XXXXXX)
trap 'rm -rf "$cache_dir" "$backing_dir"' EXIT
PMEM_IS_PMEM_FORCE=1 java -Xmx2g -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "examples/target/classes:$(cat examples/target/classpath.txt)" \
  io.wcfs.examples.EngineBench "$cache_dir" "$backing_dir" "$blocks" \
  | tee examples/results/engine.txt
