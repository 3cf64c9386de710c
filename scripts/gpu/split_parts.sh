#!/usr/bin/env bash
# Splits a tar of STAGE's ENTRIES into .carry/LETTER00, .carry/LETTER01, … (with parts.sha256 in the first),
# each as large as a device call's 64 MiB leaves beside the tracked tree, less 4 MiB for untracked files.
#   bash scripts/gpu/split_parts.sh LETTER STAGE ENTRY…      (from the repository root)
set -euo pipefail
letter=$1 stage=$2
shift 2
tree_mib=$(( ($(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s}') >> 20) + 1 ))
part_mib=$(( 64 - tree_mib - 4 ))
rm -rf ".carry/$letter"[0-9]* ".carry/${letter}all" && mkdir -p ".carry/${letter}all"
(cd "$stage" && tar -cf - "$@") | split -b "${part_mib}M" -d - ".carry/${letter}all/part."
(cd ".carry/${letter}all" && sha256sum part.* > parts.sha256)
n=0
for part in ".carry/${letter}all/part."*; do
  mkdir -p ".carry/$letter$(printf %02d $n)"; mv "$part" ".carry/$letter$(printf %02d $n)/"; n=$((n + 1))
done
mv ".carry/${letter}all/parts.sha256" ".carry/${letter}00/" && rmdir ".carry/${letter}all"
du -sh ".carry/$letter"[0-9]*
echo "$n parts of at most $part_mib MiB" >&2
