#!/usr/bin/env bash
# Packs what an index build needs on the lent GPU machine (the wheels of scripts/gpu/index-wheels.txt and
# the passage corpus and dev QA sets of ../shared/data) into parts .carry/i00, .carry/i01, … sized to what
# the tracked tree leaves of a call's 64 MiB. Each call carries one part; scripts/gpu/setup_index.sh unpacks
# them. Run from the repository root: bash scripts/gpu/pack_index.sh
set -euo pipefail
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/wheels" "$stage/data/qa"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$stage/wheels" -r scripts/gpu/index-wheels.txt
cp ../shared/data/jawiki-paragraphs.jsonl "$stage/data/"
cp ../shared/data/qa/jsquad-valid-dev.jsonl ../shared/data/qa/jaquad-dev.jsonl "$stage/data/qa/"
tree_mib=$(( ($(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s}') >> 20) + 1 ))
part_mib=$(( 64 - tree_mib - 3 ))
rm -rf .carry/i* && mkdir -p .carry/iall
(cd "$stage" && tar -cf - wheels data) | split -b "${part_mib}M" -d - .carry/iall/part.
(cd .carry/iall && sha256sum part.* > parts.sha256)
n=0
for part in .carry/iall/part.*; do
  mkdir -p ".carry/i$(printf %02d $n)"; mv "$part" ".carry/i$(printf %02d $n)/"; n=$((n + 1))
done
mv .carry/iall/parts.sha256 .carry/i00/ && rmdir .carry/iall
du -sh .carry/i*
echo "$n parts of at most $part_mib MiB" >&2
