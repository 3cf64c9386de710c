#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu/setup.sh: the issue-20 run on one H200. In one go, each step with
# benchmarks/seed_table.py (one process per engine, GPU memory sampled by nvidia-smi):
#   1. `kotae eval --limit 980` bf16 + default adapter with vLLM's compile cache emptied (the first start),
#   2. the same again (the warm start: the cache under $KOTAE_HOME/cache/vllm reused), then the base model
#      without the adapter (what the LoRA costs), then GPTQ W4A16 + adapter, then bitsandbytes NF4 + adapter,
#   3. the same bf16 eval without the overlap (KOTAE_EVAL_RETRIEVAL_BATCH=0): its answers must equal 2.'s,
#   4. the engine alone on the eval's prompts (kotae's retrieval and prompt format, into $R/http/prompts.jsonl),
#      with and without the adapter, kotae's stop tokens and the engine's loop stop, then profiled
#      (benchmarks/engine_floor.py, into $R/floor-default; FLOOR_VARIANTS as VARIANTS, with FLOOR_ARGS too,
#      into $R/floor-LABEL),
#   5. the warm evals again under other settings (VARIANTS, W4_VARIANTS),
#   6. `kotae serve` under 64 clients against vLLM's own OpenAI server on the same prompts, last: its servers
#      take minutes, and a lease may end first.
# Every engine runs with kotae's defaults: scheduler limits by workload, GPU memory sized to the model (the
# plan is written to memory-plan.txt before the first start; benchmarks/lora_metadata.py's figures to
# lora-metadata.json, its tests on this vLLM to lora-metadata-tests.log). Reports go to $R (default /tmp/r);
# `times.txt` stamps each step, `progress.log` says what runs now. Run it detached and keep a call alive
# while it works (the machine goes back 30 s after a call ends):
#   setsid nohup bash scripts/gpu/gpu_path.sh "$PWD" > /tmp/gpu_path.log 2>&1 &
#   sleep 540; cat /tmp/r/progress.log; cp -r /tmp/r/. "$OUT"/      (repeat until "done")
# Environment: DATA (a copy of ../shared/data; default beside the repository), LIMIT (980), ADAPTER (default),
# COLD (0 skips step 1 on a machine whose cache is empty: step 2's first engine then starts cold),
# WARM (0 skips step 2: the next engine then starts as it would have), BASE (0 skips step 2's base model),
# W4 (0 skips quantizing and the 4-bit eval), BNB (0 skips the bitsandbytes eval), METADATA (0 skips the
# LoRA metadata benchmark, not its tests), HTTP (0 skips step 6),
# HTTP_ROUNDS (3: step 6's pair of servers measured that many times in turn, into $R/http, $R/http-2, …: one
# pair's ratio moves by 20 points from run to run),
# OVERLAP (0 skips step 3), FLOOR (0 skips step 4), FLOOR_ARGS (engine_floor.py's options for step 4, e.g.
# "--runs full profiled --rounds 2"), VARIANTS (step 5: the warm bf16 eval again under other settings:
# space-separated "LABEL:VAR=VALUE[,VAR=VALUE]", e.g. "b256:KOTAE_EVAL_RETRIEVAL_BATCH=256", or
# "vllm-meta:VLLM_PLUGINS=kotae_tokenizer_pool" for vLLM's own LoRA metadata update, each into $R/variant-LABEL),
# W4_VARIANTS (the same for the GPTQ W4A16 eval, e.g. "marlin:VLLM_DISABLED_KERNELS=MacheteLinearKernel", into
# $R/w4-variant-LABEL), SERVE_VARIANTS (the same for step 6's `kotae serve` alone, on the same prompts, each
# into $R/serve-LABEL, e.g. "t16k:KOTAE_SERVE_MAX_NUM_BATCHED_TOKENS=16384"), PYSPY (a py-spy binary: the
# warm bf16 eval, with step 4 the engine alone once more and with step 6 `kotae serve` under 64 clients, each
# under it, into $R/pyspy-{eval,floor,serve}.txt.gz, read into $R/pyspy-*-engine-core.txt, the event loops
# into $R/pyspy-{eval,serve}-event-loop.txt and the server's retrieval thread into
# $R/pyspy-serve-retrieval.txt).
# Run python from outside the repository: there the source folder kotae/ would shadow the installed package.
# TOKENIZERS_PARALLELISM stays unset, as in a user's shell: each batch's prompts are counted and encoded in one
# Rust call that runs on every core ("false" runs it on one, on the eval's retrieval path).
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 \
  KOTAE_HOME=${KOTAE_HOME:-/tmp/kotae-home}
export KOTAE_INDEX=$KOTAE_HOME/indexes/jawiki
repo=${1:?usage: gpu_path.sh REPO}
R=${R:-/tmp/r}
DATA=${DATA:-$repo/../shared/data}
LIMIT=${LIMIT:-980} ADAPTER=${ADAPTER:-default}
w4=$KOTAE_HOME/models/gemma-3-270m-w4a16
mkdir -p "$R"
cd /tmp || exit 1
stamp() { echo "$(date +%s) $*" >> "$R/times.txt"; echo "[$(date +%T)] $*" >> "$R/progress.log"; }
seed() {  # seed() OUT STAGE...: one seed_table run into $R/OUT (under $RUN_UNDER, a command prefix, if set)
  local out=$1; shift
  stamp "start $out: $*"
  ${RUN_UNDER:-} python3 "$repo/benchmarks/seed_table.py" --data "$DATA/qa/jsquad-valid.jsonl" --limit "$LIMIT" \
    --adapter "$ADAPTER" --w4-model "$w4" --out "$R/$out" --stages "$@" >> "$R/$out.log" 2>&1
  stamp "done $out (exit $?)"
}
each_variant() {  # each_variant() RUN VARIANT...: `RUN LABEL` under each "LABEL:VAR=VALUE[,VAR=VALUE]"
  local run=$1 variant
  shift
  for variant in "$@"; do
    (IFS=, && export ${variant#*:} && "$run" "${variant%%:*}")
  done
}
stamp start
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$R/gpu.txt"
python3 -m kotae models pull > "$R/pull.log" 2>&1; stamp pulled
# The index build, the GPTQ quantization and the LoRA metadata tests each take a sliver of the card and a few
# of the cores: they run side by side (about a minute sooner), before anything is timed.
index_build=
if [ ! -f "$KOTAE_INDEX/manifest.json" ]; then
  python3 -m kotae index build "$DATA/jawiki-paragraphs.jsonl" --out "$KOTAE_INDEX" > "$R/index.log" 2>&1 &
  index_build=$!
fi
if [ "${W4:-1}" = 1 ] && [ ! -f "$w4/config.json" ]; then
  KOTAE_QUANT_SITE=/tmp/site_q python3 -m kotae quantize --model "$KOTAE_HOME/models/gemma-3-270m" --out "$w4" \
    --calib "$DATA/jawiki-paragraphs.jsonl" > "$R/quantize.log" 2>&1
  stamp "quantized (exit $?)"
fi
# The plugin's tensors against vLLM 0.26's own, where pytest is installed.
python3 -m pytest -q -p no:cacheprovider "$repo/tests/rag/test_lora_metadata.py" > "$R/lora-metadata-tests.log" 2>&1
stamp "lora-metadata tests (exit $?)"
[ -z "$index_build" ] || wait "$index_build"
stamp "indexed (exit $?)"
# What kotae will reserve for each workload, as its engines log it at start.
python3 - "$KOTAE_HOME/models/gemma-3-270m" > "$R/memory-plan.txt" 2>&1 <<'PY'
import sys
from pathlib import Path
from kotae.core.config import get_settings
from kotae.rag.gpu_memory import plan_gpu_memory
from kotae.rag.scheduler_limits import scheduler_limits
settings = get_settings()
for workload in ("batch", "serve"):
    limits = scheduler_limits(settings, workload, on_gpu=True)
    print(workload, limits, plan_gpu_memory(Path(sys.argv[1]), settings, limits.max_num_seqs).describe())
PY
# vLLM's LoRA metadata update against kotae's plugin, each behind 50 ms of queued GPU work.
if [ "${METADATA:-1}" = 1 ]; then
  python3 "$repo/benchmarks/lora_metadata.py" --out "$R/lora-metadata.json" > "$R/lora-metadata.log" 2>&1
  stamp "lora-metadata (exit $?)"
fi
if [ "${COLD:-1}" = 1 ]; then
  rm -rf "$KOTAE_HOME/cache/vllm"  # the next engine start is the first one
  seed cold eval-adapter
  du -sh "$KOTAE_HOME/cache/vllm" > "$R/cache.txt" 2>&1
fi
stages=(eval-adapter)
[ "${BASE:-1}" = 1 ] && stages+=(eval-bf16)
[ "${W4:-1}" = 1 ] && stages+=(eval-w4-adapter)
[ "${BNB:-1}" = 1 ] && stages+=(eval-bnb-adapter)
[ "${WARM:-1}" = 1 ] && seed warm "${stages[@]}"
[ "${OVERLAP:-1}" = 1 ] && KOTAE_EVAL_RETRIEVAL_BATCH=0 seed no-overlap eval-adapter
floor() {  # floor() LABEL [ARG...]: benchmarks/engine_floor.py on the eval's prompts into $R/floor-LABEL
  local label=$1; shift
  stamp "start floor-$label"
  ${RUN_UNDER:-} python3 "$repo/benchmarks/engine_floor.py" --prompts "$R/http/prompts.jsonl" --limit "$LIMIT" \
    --adapter "$ADAPTER" --out "$R/floor-$label" "$@" > "$R/floor-$label.log" 2>&1
  stamp "done floor-$label (exit $?)"
  rm -f "$R/floor-$label"/profile/*.pt.trace.json*  # tens of MB; figures.json keeps what they say
}
floor_variant() { local IFS=' '; floor "$1" ${FLOOR_ARGS:-}; }  # each_variant splits on commas
# The prompts that steps 4 and 6 share (SERVE_VARIANTS' servers too, with or without the pair of step 6).
[ "${FLOOR:-1}${HTTP:-1}" = 00 ] && [ -z "${SERVE_VARIANTS:-}" ] || seed http prompts
if [ "${FLOOR:-1}" = 1 ]; then
  floor default ${FLOOR_ARGS:-}
  each_variant floor_variant ${FLOOR_VARIANTS:-}
fi
eval_again() { seed "variant-$1" eval-adapter; }
w4_eval_again() { seed "w4-variant-$1" eval-w4-adapter; }
each_variant eval_again ${VARIANTS:-}
[ "${W4:-1}" = 1 ] && each_variant w4_eval_again ${W4_VARIANTS:-}
# Step 6 last: its two servers take minutes, and a lease may end first.
if [ "${HTTP:-1}" = 1 ]; then
  seed http serve vllm
  for round in $(seq 2 "${HTTP_ROUNDS:-3}"); do
    mkdir -p "$R/http-$round" && cp "$R/http/prompts.jsonl" "$R/http-$round/" && seed "http-$round" serve vllm
  done
fi
serve_again() { mkdir -p "$R/serve-$1" && cp "$R/http/prompts.jsonl" "$R/serve-$1/" && seed "serve-$1" serve; }
each_variant serve_again ${SERVE_VARIANTS:-}
# Where each process's Python time goes: the warm bf16 eval, the engine alone, then `kotae serve`, sampled by
# py-spy with their child processes (the engine core, the retrieval process, the server), each thread apart.
# benchmarks/pyspy_summary.py reads each recording: the event loops, the engine core's loop.
spy_rate=200
spy() { echo "$PYSPY record --subprocesses --threads --nonblocking --rate $spy_rate --format raw -o $R/pyspy-$1.txt --"; }
summarize() {
  python3 "$repo/benchmarks/pyspy_summary.py" "$R/pyspy-$1.txt.gz" --rate "$spy_rate" --within "$2" --top 40
}
if [ -n "${PYSPY:-}" ]; then
  RUN_UNDER=$(spy eval) seed pyspy-eval eval-adapter
  [ "${FLOOR:-1}" = 1 ] && RUN_UNDER=$(spy floor) floor pyspy --runs full --rounds 2
  [ "${HTTP:-1}" = 1 ] && RUN_UNDER=$(spy serve) serve_again pyspy
  gzip -f "$R"/pyspy-*.txt
  for recording in eval floor; do
    summarize "$recording" run_busy_loop > "$R/pyspy-$recording-engine-core.txt" 2>&1
  done
  for recording in eval serve; do
    summarize "$recording" _run_once > "$R/pyspy-$recording-event-loop.txt" 2>&1
  done
  # The server's retrieval thread: what it ran; the rest of its time it waited (the interpreter, the GPU).
  summarize serve _drain > "$R/pyspy-serve-retrieval.txt" 2>&1
fi
find "$KOTAE_HOME/cache/vllm" -maxdepth 3 -type d > "$R/cache-tree.txt" 2>&1
du -sh "$KOTAE_HOME/cache/vllm" >> "$R/cache.txt" 2>&1
# The overlap must not change an answer: 2.'s predictions against 3.'s.
[ "${OVERLAP:-1}" = 1 ] && python3 - "$R" > "$R/overlap-check.txt" 2>&1 <<'PY'
import json, sys
def answers(out):
    rows = open(f"{sys.argv[1]}/{out}/runs/eval-adapter/predictions.jsonl", encoding="utf-8")
    return [(row["qid"], row["prediction"]) for row in map(json.loads, rows)]
overlapped, together = answers("warm"), answers("no-overlap")
differ = [a for a, b in zip(overlapped, together) if a != b]
print(f"{len(overlapped)} answers with the overlap, {len(together)} without; {len(differ)} differ: {differ[:5]}")
PY
stamp done
