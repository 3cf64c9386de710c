#!/usr/bin/env bash
# Packs what an index build needs on the lent GPU machine (the wheels of scripts/gpu/index-wheels.txt and
# the passage corpus and the QA sets of ../shared/data: dev to measure, train for the reranker) into parts .carry/i00, .carry/i01, … (split_parts.sh).
# Each call carries one part; scripts/gpu/setup_index.sh unpacks them. From the repository root:
#   bash scripts/gpu/pack_index.sh
set -euo pipefail
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/wheels" "$stage/data/qa"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$stage/wheels" -r scripts/gpu/index-wheels.txt
cp ../shared/data/jawiki-paragraphs.jsonl "$stage/data/"
cp ../shared/data/qa/{jsquad-valid-dev,jaquad-dev,jsquad-valid-train,jaquad-train}.jsonl "$stage/data/qa/"
bash scripts/gpu/split_parts.sh i "$stage" wheels data
