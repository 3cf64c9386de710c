#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu/setup_index.sh: issue 16's recall among 5.5M with kotae's reranker in
# one lease (about 20 min). A second copy of index_5m.sh (reports in $R2, default /tmp/r2; niced, so that the
# build keeps the CPUs it needs) builds the real paragraphs' index, trains the reranker on it and queries it
# reranked, while this one builds the 5.5M; then the 5.5M is queried reranked (which reports the plain hybrid,
# dense, BM25 and exhaustive figures beside the reranked ones). Detach it and poll as index_5m.sh says:
#   setsid nohup bash scripts/gpu/index_5m_reranked.sh "$PWD" > /tmp/index_5m.log 2>&1 &
set -u
repo=$1
R2=${R2:-/tmp/r2}
script=$repo/scripts/gpu/index_5m.sh
R=$R2 STEPS="real reranker reranked" RERANKED=idx13k nice -n 10 bash "$script" "$repo" > "${R2%/}.log" 2>&1 &
second=$!
# One model-store pull at a time: this copy starts once the other has the embedder.
until grep -qs pulled "$R2/times.txt" || ! kill -0 "$second" 2> /dev/null; do sleep 2; done
STEPS=build bash "$script" "$repo"
wait "$second"
STEPS=reranked RERANKED=idx5m bash "$script" "$repo"
