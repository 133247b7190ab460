#!/usr/bin/env bash
# Long load run (issue 5): 16 threads of mixed reads, writes and fsyncs over files larger than
# the cache, verified against a model, daemon RSS checked for a plateau.
#   examples/load.sh [SECONDS]    (default 600)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
mvn -q -B install -DskipTests
mvn -B -pl fs test -Dtest=LoadTest -Dsurefire.failIfNoSpecifiedTests=false \
  -Dwcfs.load.seconds="${1:-600}" | grep -E "load:|Tests run:|FAIL" | tail -3
