#!/usr/bin/env bash
# What answering extended attributes costs the write path (issue 15), in one run:
#   noxattr - a mount with -o noxattr: xattrs answered ENOSYS, as wcfs did before; the kernel
#             remembers it and never asks
#   xattr   - the default: xattrs passed to the backing files, kill-priv v2 negotiated, the
#             kernel's security.capability probes answered from memory
#   nokp    - (with --nokillpriv) xattrs answered WITHOUT kill-priv v2 (WCFS_NO_KILLPRIV=1, a
#             measurement knob): the kernel then asks before every write
# Two or three mounts side by side over separate backing directories on the same disk, cache
# on tmpfs with PMEM_IS_PMEM_FORCE=1; fio 4 KiB random write+fsync, 1 job, ROUNDS rounds of
# SECONDS each, the setups back to back within each round and in reverse order every other
# round (the machine's drift hits all alike). Prints the median IOPS of each, the ratio to noxattr, and the GETXATTR requests the
# daemon saw per write; then 200 SQLite transactions (rollback journal, then WAL) on each with
# GETXATTR per transaction.
#
#   examples/bench-xattr.sh [ROUNDS] [SECONDS] [--nokillpriv]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${1:-5}"
SECS="${2:-5}"
setups=(noxattr xattr)
[ "${3:-}" = "--nokillpriv" ] && setups+=(nokp)
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root: it installs fio and sqlite3 if missing and mounts" >&2
  exit 1
fi
pkgs=()
command -v fio >/dev/null || pkgs+=(fio)
command -v sqlite3 >/dev/null || pkgs+=(sqlite3)
if [ ${#pkgs[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; }
fi
"$here/wcfs" --version >/dev/null   # builds if needed
wcfs() { java -jar "$here/fs/target/wcfs.jar" "$@"; }

work=$(mktemp -d /var/tmp/wcfs-bench-xattr.XXXXXX)
export PMEM_IS_PMEM_FORCE=1
cleanup() {
  set +e
  for s in "${setups[@]}"; do
    if grep -q " $work/$s/mnt " /proc/self/mountinfo; then
      wcfs umount "$work/$s/mnt" >/dev/null 2>&1 || fusermount -u -z "$work/$s/mnt"
    fi
    rm -rf "/dev/shm/wcfs-bench-xattr-$s-$$"
  done
  rm -rf "$work"
}
trap cleanup EXIT
for s in "${setups[@]}"; do
  mkdir -p "$work/$s/backing" "$work/$s/mnt" "/dev/shm/wcfs-bench-xattr-$s-$$"
  flags=(--cache-size 512M)
  [ "$s" = noxattr ] && flags+=(-o noxattr)
  if [ "$s" = nokp ]; then
    WCFS_NO_KILLPRIV=1 wcfs mount "${flags[@]}" "/dev/shm/wcfs-bench-xattr-$s-$$" \
      "$work/$s/backing" "$work/$s/mnt" >/dev/null
  else
    wcfs mount "${flags[@]}" "/dev/shm/wcfs-bench-xattr-$s-$$" "$work/$s/backing" \
      "$work/$s/mnt" >/dev/null
  fi
done

getx() { wcfs status --json "$1" | sed 's/.*"getxattr_requests": \([0-9]*\).*/\1/'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A iops writes getxattrs
for r in $(seq 1 "$ROUNDS"); do
  order=("${setups[@]}")
  if (( r % 2 == 0 )); then # every other round in reverse: no setup always runs first
    order=(); for ((i = ${#setups[@]} - 1; i >= 0; i--)); do order+=("${setups[i]}"); done
  fi
  for s in "${order[@]}"; do
    before=$(getx "$work/$s/mnt")
    line=$(fio --name=w --filename="$work/$s/mnt/fio.dat" --size=256M --bs=4k \
      --rw=randwrite --fsync=1 --ioengine=psync --runtime="$SECS" --time_based \
      --output-format=json 2>/dev/null | python3 -c "import json,sys; \
j=json.load(sys.stdin)['jobs'][0]['write']; print('%.0f %d' % (j['iops'], j['total_ios']))")
    after=$(getx "$work/$s/mnt")
    iops[$s]+="${line% *} "
    writes[$s]=$(( ${writes[$s]:-0} + ${line#* } ))
    getxattrs[$s]=$(( ${getxattrs[$s]:-0} + after - before ))
    echo "round $r $s: ${line% *} IOPS" >&2
  done
done

# The ratio to noxattr is the median of the per-round ratios: each round runs the setups
# back to back, so a slow spell of the machine hits both sides of a ratio alike.
printf '\nfio 4K random write+fsync, 1 job, %s rounds x %s s\n' "$ROUNDS" "$SECS"
printf '%-8s %12s %22s %16s   %s\n' setup 'median IOPS' 'median ratio/noxattr' \
  GETXATTR/write 'IOPS per round'
for s in "${setups[@]}"; do
  m=$(echo ${iops[$s]} | tr ' ' '\n' | median)
  ratio=$(paste <(echo ${iops[$s]} | tr ' ' '\n') <(echo ${iops[noxattr]} | tr ' ' '\n') \
    | awk 'NF == 2 {printf "%.4f\n", $1/$2}' | median)
  printf '%-8s %12s %22s %16s   %s\n' "$s" "$m" "$ratio" "$(awk -v g="${getxattrs[$s]}" \
    -v w="${writes[$s]}" 'BEGIN {printf "%.5f", g/w}')" "${iops[$s]}"
done

printf '\nSQLite, 200 transactions of one insert each, synchronous=FULL\n'
printf '%-8s %-8s %18s %10s\n' setup journal GETXATTR/transaction seconds
for s in "${setups[@]}"; do
  sqlite3 "$work/$s/mnt/db" "create table t(x)"
  for mode in delete wal; do
    sql=$(echo "pragma journal_mode=$mode; pragma synchronous=full;"; for i in $(seq 1 200); do
      echo "begin; insert into t values(randomblob(300)); commit;"; done)
    before=$(getx "$work/$s/mnt")
    start=$(date +%s.%N)
    echo "$sql" | sqlite3 "$work/$s/mnt/db" >/dev/null
    end=$(date +%s.%N)
    after=$(getx "$work/$s/mnt")
    printf '%-8s %-8s %18s %10s\n' "$s" "$mode" "$(awk -v g=$((after - before)) \
      'BEGIN {printf "%.2f", g/200}')" "$(awk -v a="$start" -v b="$end" \
      'BEGIN {printf "%.2f", b-a}')"
  done
done
