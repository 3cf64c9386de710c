#!/usr/bin/env bash
# Packs what the query embedder needs on the lent GPU machine without the vLLM kit (the wheels of
# scripts/gpu/embedder-wheels.txt and jsquad-valid's questions) into parts .carry/e00, .carry/e01, …
# (split_parts.sh): four calls instead of the kit's 25 when a lease is short. Each call carries one part;
# scripts/gpu/embedder_only.sh unpacks them and runs. From the repository root:
#   bash scripts/gpu/pack_embedder.sh
set -euo pipefail
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/wheels" "$stage/data/qa"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$stage/wheels" -r scripts/gpu/embedder-wheels.txt
cp ../shared/data/qa/jsquad-valid.jsonl "$stage/data/qa/"
bash scripts/gpu/split_parts.sh e "$stage" wheels data
