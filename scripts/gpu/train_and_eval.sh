#!/usr/bin/env bash
# One lease's adapter run on the GPU machine, after scripts/gpu/setup.sh: pull the model, index the corpus, train
# one adapter (a further epoch of another, or a fresh one), then evaluate adapters over one `kotae serve`.
#   bash scripts/gpu/train_and_eval.sh EXAMPLES RUN [kotae train sft options, e.g. --init-adapter DIR --seed 45]
# Environment: DATA (a copy of ../shared/data; default /tmp/shared/data), WORK (results; default /tmp/lead),
# EVAL_ADAPTERS (adapter folders to compare beside RUN, e.g. the one it continues), EVAL_SETS, TOP_KS, LIMIT,
# SHRINK_RANKS (lower-rank copies of RUN to evaluate too, `kotae train shrink`: RUN-r64 for 64).
# Run it detached (`setsid nohup … &`): a device call stops after 10 minutes. `$WORK/times` stamps each step;
# `$WORK/DONE` appears at the end. Then scripts/gpu/collect.sh puts the results under $OUT.
set -x
examples=${1:?usage: train_and_eval.sh EXAMPLES RUN [kotae train sft options]}
run=${2:?usage: train_and_eval.sh EXAMPLES RUN [kotae train sft options]}
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${DATA:-/tmp/shared/data} WORK=${WORK:-/tmp/lead}
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 KOTAE_HOME=${KOTAE_HOME:-/tmp/kotae-home} \
  TOKENIZERS_PARALLELISM=false JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 KOTAE_ADAPTER_DIR=$WORK/adapters
export KOTAE_INDEX=$KOTAE_HOME/indexes/jawiki
mkdir -p "$WORK/adapters" "$WORK/evals" && cd "$WORK" || exit 1
stamp() { echo "$1 $(date +%s)" >> "$WORK/times"; }
stamp start
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > gpu.txt
for adapter in ${EVAL_ADAPTERS:-}; do cp -r "$adapter" "$WORK/adapters/"; done
python3 -m kotae models pull > pull.log 2>&1; stamp pull
# The index needs the GPU for a minute only: it builds while TRL tokenizes the examples.
( python3 -m kotae index build "$DATA/jawiki-paragraphs.jsonl" --out "$KOTAE_INDEX" > index.log 2>&1; stamp index ) &
index=$!
if ! bash "$repo/adapters/gpu/train_default.sh" "$examples" "$WORK/adapters/$run" "$@" > train.log 2>&1; then
  stamp train-failed; tail -5 train.log; exit 1  # nothing to evaluate: say so now, not after a server start
fi
stamp train
shrunk=()
for rank in ${SHRINK_RANKS:-}; do
  python3 -m kotae train shrink --adapter "adapters/$run" --r "$rank" --out "adapters/$run-r$rank" >> shrink.log 2>&1
  shrunk+=("$run-r$rank")
done
wait $index
python3 -m kotae serve --port 8020 > serve.log 2>&1 &
server=$!
until curl -sf http://127.0.0.1:8020/readyz > /dev/null; do sleep 2; done; stamp serve
for adapter in "$run" "${shrunk[@]}" ${EVAL_ADAPTERS:-}; do
  name=$(basename "$adapter")
  for set in ${EVAL_SETS:-jsquad-valid jaquad-dev}; do for k in ${TOP_KS:-3}; do
    python3 -m kotae eval --target http://127.0.0.1:8020 --data "$DATA/qa/$set.jsonl" --limit "${LIMIT:-980}" \
      --adapter "$name" --top-k "$k" --concurrency 64 --out "evals/$name-$set-top$k" > "evals/$name-$set-top$k.log" 2>&1
    stamp "eval-$name-$set-top$k"
  done; done
done
kill $server; wait $server
echo done > DONE
