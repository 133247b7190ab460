#!/usr/bin/env bash
# The README's first command (./wcfs demo): mount a wcfs with a default cache under a temporary
# directory, write and fsync through it, read it back, show status. The mount stays up.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
wcfs="$here/wcfs"
dir=$(mktemp -d /tmp/wcfs-demo.XXXXXX)
mkdir -p "$dir/cache" "$dir/data" "$dir/mnt"
echo "existing file in the backing directory" > "$dir/data/hello.txt"

echo "== wcfs mount $dir/cache $dir/data $dir/mnt"
"$wcfs" mount "$dir/cache" "$dir/data" "$dir/mnt"

echo "== write and fsync through the mount (dd conv=fsync)"
printf 'written through wcfs at %s\n' "$(date -Is)" \
  | dd of="$dir/mnt/journal.log" conv=fsync status=none
echo "== read back"
cat "$dir/mnt/hello.txt" "$dir/mnt/journal.log"
echo "== wcfs status $dir/mnt"
"$wcfs" status "$dir/mnt" | sed -n '1,40p'
cat <<MSG

wcfs is mounted at $dir/mnt over $dir/data (cache $dir/cache/wcfs.cache, log $dir/cache/wcfs.log).
Write back everything and unmount with:
  $wcfs umount $dir/mnt
MSG
