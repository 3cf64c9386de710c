#!/usr/bin/env bash
# On the GPU machine without the vLLM kit, once every part of pack_embedder.sh is in /tmp/kotae-parts:
# installs its wheels into /tmp/embedder-site, then runs the query graphs' tests on CUDA and
# benchmarks/query_embedding.py from CUDA graphs and eagerly, alone and beside a busy Python thread (eagerly
# with sentence-transformers' own encode and torch's profile too), into $OUT/r (about 6 min on an H200).
# From the repository root, in the call that carries the last part:  bash scripts/gpu/embedder_only.sh
set -u
repo=$PWD R=$OUT/r
mkdir -p "$R"
stamp() { echo "[$(date +%T)] $*" >> "$R/progress.log"; }
bash scripts/gpu/unpack_parts.sh >> "$R/progress.log" 2>&1 || exit 1
python3 -m pip install -q --no-index --no-deps --target /tmp/embedder-site /tmp/kotae-stage/wheels/*.whl \
  > "$R/pip.log" 2>&1
export PYTHONPATH=$repo:/tmp/embedder-site HF_HUB_OFFLINE=1 KOTAE_HOME=/tmp/kotae-home PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$R/gpu.txt"
stamp start
python3 -m pytest -q -p no:cacheprovider tests/indexer/test_query_graphs.py > "$R/query-graphs-tests.log" 2>&1
stamp "tests (exit $?)"
embed() {  # embed LABEL GRAPHS ARG...: benchmarks/query_embedding.py into $R/query-embedding-LABEL.jsonl
  local label=$1 graphs=$2; shift 2
  KOTAE_EMBEDDER_CUDA_GRAPHS=$graphs python3 benchmarks/query_embedding.py \
    /tmp/kotae-stage/data/qa/jsquad-valid.jsonl "$@" > "$R/query-embedding-$label.jsonl" \
    2> "$R/query-embedding-$label.log"
  stamp "query embedding $label (exit $?)"
}
embed graphs true --sizes 1 10 64 --rounds 20 --warmup 3 --busy-thread
embed eager false --sizes 1 10 64 --rounds 10 --warmup 2 --busy-thread --library \
  --profile "$R/query-embedding-profile-eager.txt"
stamp done
