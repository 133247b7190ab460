#!/usr/bin/env bash
# Large-scale crash harness (issue 5): the suite's kill -9 tests with many more kills, and the
# engine crash simulator over many more seeds. Every failure message names its seed.
#   examples/crash-harness.sh [KILLS] [SQLITE_KILLS] [SEED] [CRASH_SEEDS]
#   e.g. examples/crash-harness.sh 500 100 42 0-2000
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kills="${1:-300}"; sqlite_kills="${2:-60}"; seed="${3:-$RANDOM}"; seeds="${4:-0-1000}"
cd "$here"
echo "kill -9 rounds: $kills (+ $sqlite_kills during SQLite), seed $seed; simulator seeds $seeds"
mvn -q -B install -DskipTests
mvn -B -pl native,cache-core test -Dtest=WriteCacheCrashTest -Dsurefire.failIfNoSpecifiedTests=false \
  -Dwcfs.crash.seeds="$seeds" | grep -E "Tests run:|FAIL" | tail -3
mvn -B -pl fs test -Dtest=KillTest -Dsurefire.failIfNoSpecifiedTests=false \
  -Dwcfs.kill.rounds="$kills" -Dwcfs.kill.sqliteRounds="$sqlite_kills" -Dwcfs.kill.seed="$seed" \
  | grep -E "Tests run:|FAIL" | tail -3
