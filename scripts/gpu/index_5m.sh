#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu/setup_index.sh: the issue-16 run. The 1.3M-article (≈5.5M-passage)
# stand-in dump, its build with the real paragraphs beside it (timed, memory sampled), its recall and
# per-question latency stage by stage, and the real paragraphs alone for the side-by-side recall. Reports
# go to $R (default /tmp/r); `times.txt` stamps each step. STEPS picks the steps, in this order:
#   embedding  GPU embedding speed, torch fp16 eager against compiled (then the build compiles if faster)
#   build      the dump (topics of its own per article; DUMP_ARGS=--shared-topics for one vocabulary) and
#              the 5.5M build
#   query      recall of both QA sets, dense recall and latency by IVF-PQ nprobe (NPROBES), latency with the
#              questions embedded on the GPU
#   query-cpu  recall and latency with the questions embedded on the CPUs (faiss on default and 1 thread)
#   pruning    BM25 alone, pruned against every posting read
#   upsert     100-document upserts into the 5.5M index
#   real       the real paragraphs alone: build and query
#   reranker   `kotae train reranker` on jaquad-train + jsquad-valid-train into /tmp/reranker, negatives
#              from the real paragraphs alone (needs `real`); RERANKER_ARGS adds options (`--max-steps N`)
#   reranked   recall and latency with /tmp/reranker of each index of RERANKED (default: idx5m idx13k),
#              reranking the fused top 50 and the top RERANK_DEPTHS (default 100)
# scripts/gpu/index_5m_reranked.sh runs `real reranker` in a second copy beside the 5.5M build.
# Run it detached and keep a call alive while it works (the machine goes back 30 s after a call ends):
#   setsid nohup bash scripts/gpu/index_5m.sh "$PWD" > /tmp/index_5m.log 2>&1 &
#   sleep 540; cat /tmp/r/times.txt; cp /tmp/r/*.json /tmp/r/times.txt "$OUT"/     (repeat until "done")
# Run python from outside the repository: there the source folder kotae/ would shadow the installed package.
set -u
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
repo=$1
R=${R:-/tmp/r}
STEPS=" ${STEPS:-build query query-cpu pruning real} "
mkdir -p "$R"
cd /tmp || exit 1
data=$repo/../shared/data
stamp() { echo "$(date +%s) $*" >> "$R/times.txt"; }
step() { [[ $STEPS == *" $1 "* ]]; }
stamp start "$STEPS"
python3 -c "from pathlib import Path; from kotae.models.store import ModelStore; ModelStore(Path.home() / '.cache' / 'kotae').pull_embedder()" > "$R/pull.txt" 2>&1
stamp pulled
export KOTAE_EMBEDDER_COMPILE=true
if step embedding; then
  # Eager first, then compiled in a run of its own (a compiler failure loses nothing else); fp32 is the
  # reference of both (its vectors are cached by the first).
  for variants in "torch-fp16" "torch-fp16-compiled"; do
    timeout 300 python3 "$repo/benchmarks/embedding_speed.py" --device cuda --out "$R/embedding-$variants.json" \
      --variants torch-fp32 $variants --recall-variants torch-fp32 $variants --throughput "${THROUGHPUT:-100000}" --rounds 1 \
      > "$R/embedding-$variants.log" 2>&1
  done
  stamp embedded
  # The build compiles the encoder where the runs above found it faster on token ids made beforehand.
  compile=$(python3 - "$R" <<'PY' 2>> "$R/times.txt"
import json, sys
def rate(variant):
    report = json.load(open(f"{sys.argv[1]}/embedding-{variant}.json"))
    return report["throughput"]["variants"][variant]["passages_per_second_pretokenized"]
print("true" if rate("torch-fp16-compiled") > 1.1 * rate("torch-fp16") else "false")
PY
  )
  export KOTAE_EMBEDDER_COMPILE=${compile:-true}
fi
echo "KOTAE_EMBEDDER_COMPILE=$KOTAE_EMBEDDER_COMPILE" >> "$R/times.txt"
if step build; then
  python3 "$repo/benchmarks/jawiki_dump.py" --out /tmp/jawiki-5m.xml.bz2 --workers "$(nproc)" \
    --articles "${ARTICLES:-1300000}" ${DUMP_ARGS:-} > "$R/dump.txt" 2>&1
  stamp dumped
  python3 "$repo/benchmarks/index_scale.py" build --out /tmp/idx5m --report "$R/build5m.json" -- \
    /tmp/jawiki-5m.xml.bz2 "$data/jawiki-paragraphs.jsonl" --type ivfpq > "$R/build5m.log" 2>&1
  stamp built
fi
if step query; then
  python3 "$repo/benchmarks/index_scale.py" query --index /tmp/idx5m --device cuda --faiss-threads 0 \
    --latency-questions "${LATENCY_QUESTIONS:-300}" --nprobe ${NPROBES:-64 128 256 512} --report "$R/query5m.json" \
    > "$R/query5m.log" 2>&1
  stamp queried
fi
if step query-cpu; then
  python3 "$repo/benchmarks/index_scale.py" query --index /tmp/idx5m --data "$data/qa/jsquad-valid-dev.jsonl" \
    --latency-questions "${LATENCY_QUESTIONS:-300}" --faiss-threads 0 1 --report "$R/query5m-cpu.json" > "$R/query5m-cpu.log" 2>&1
  stamp queried-cpu
fi
if step pruning; then
  python3 "$repo/benchmarks/bm25_pruning.py" --bm25 /tmp/idx5m/bm25 --data "$data/qa/jsquad-valid-dev.jsonl" \
    --k 50 > "$R/bm25-pruning5m.json" 2> "$R/bm25-pruning5m.log"
  stamp pruning
fi
if step upsert; then
  python3 "$repo/benchmarks/document_upsert.py" --index /tmp/idx5m --corpus "$data/jawiki-paragraphs.jsonl" \
    --documents 100 --rounds 3 > "$R/upsert5m.txt" 2>&1
  stamp upserted
fi
if step real; then
  python3 "$repo/benchmarks/index_scale.py" build --out /tmp/idx13k --report "$R/build13k.json" -- \
    "$data/jawiki-paragraphs.jsonl" > "$R/build13k.log" 2>&1
  stamp built13k
  python3 "$repo/benchmarks/index_scale.py" query --index /tmp/idx13k --device cuda --faiss-threads 0 \
    --latency-questions "${LATENCY_QUESTIONS:-300}" --report "$R/query13k.json" > "$R/query13k.log" 2>&1
  stamp queried13k
fi
if step reranker; then
  # Negatives from the real paragraphs alone: a reranker that learnt the stand-in's text would not say
  # what one does on a real corpus.
  python3 -m kotae train reranker --data "$data/qa/jaquad-train.jsonl" --data "$data/qa/jsquad-valid-train.jsonl" \
    --index /tmp/idx13k --out /tmp/reranker ${RERANKER_ARGS:-} > "$R/reranker-train.log" 2>&1
  stamp trained-reranker
fi
if step reranked; then
  for index in ${RERANKED:-idx5m idx13k}; do
    python3 "$repo/benchmarks/index_scale.py" query --index "/tmp/$index" --device cuda --faiss-threads 0 \
      --reranker /tmp/reranker --rerank-depth ${RERANK_DEPTHS:-100} --latency-questions "${LATENCY_QUESTIONS:-300}" \
      --report "$R/query-$index-reranked.json" > "$R/query-$index-reranked.log" 2>&1
    stamp "queried $index reranked"
  done
fi
stamp done
