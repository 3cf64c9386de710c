#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu/setup.sh: the issue-18 adapter run on one H200. It
#   1. pulls the models, indexes jawiki-paragraphs and quantizes the base (GPTQ W4A16) beside;
#   2. holds HOLD_OUT articles of jsquad-valid-train out (chosen by the sha256 of their ids): the runs are
#      compared on those, never on the dev sets; builds SFT examples of the rest, once per share of negatives
#      in SHARES (questions asked again without their gold article, taught to abstain; the same seed, so
#      every set holds the same positives), and the unanswerable twins of the held-out questions and of
#      both dev sets (benchmarks/noans_set.py);
#   3. trains one adapter per share (`negN` for N% negatives; neg0 is the same recipe with abstention off),
#      two at a time, then continues the second share's against the 4-bit weights (`negN-w4`, its base the
#      W4A16 model);
#   4. scores every adapter on the held-out questions, jsquad-valid-dev and jaquad-dev, each with its twins,
#      bf16 and W4A16, with
#      benchmarks/adapter_table.py: one engine per base, the shipped default first, while the others train.
# Reports go to $R (default /tmp/r): bf16/table.md, w4/table.md (w4-tuned/table.md with TRAINED), paired-SET.md
# (every run against the default on bf16, question by question: `kotae eval compare --paired`), times.txt,
# progress.log, logs/; adapters to $R/adapters, examples to $R/ex. Run it detached and keep a call alive
# while it works:
#   setsid nohup bash scripts/gpu/default_adapter.sh "$PWD" > /tmp/default_adapter.log 2>&1 &
# Environment: DATA (a copy of ../shared/data; default beside the repository), SHARES ("0 0.5 0.25": the
# control first, then the share also tuned on 4 bits, then any others), HOLD_OUT (10 of the 44 articles, 610 questions; 0
# trains on all of them and compares on nothing but the dev sets), EPOCHS (2), LR (1e-4), W4_EPOCHS (1),
# W4_LR (5e-5), W4_GROUP_SIZE (weights per 4-bit scale: 32, 64 or 128; default the scheme's, 128), W4 (0
# leaves out the 4-bit base: no quantizing, and no tuning or tables on it, which a lease short of time cannot
# fit), SEED (47), MIX (another training QA set whose examples, with the same share of negatives, every
# run trains on too, e.g. $DATA/qa/jaquad-train.jsonl; none by default), MIX_QUESTIONS (that many of MIX's
# questions, chosen by the sha256 of their ids; default all), INIT (the adapter every run continues; default
# the shipped one, which was trained on every jsquad-valid-train article: held-out figures are clean only from
# one that never saw them, such as the JaQuAD-only default of 830c625, taken out of git before the lease with
#   mkdir -p .carry/init && git archive 830c625 adapters/trained/default | tar -x -C .carry/init
# and carried in a call of its own (30 MB) that runs `cp -r .carry/init/adapters/trained/default /tmp/init`:
# INIT=/tmp/init. The tables still score the shipped one as `default`), TRAINED (an adapter already trained on
# the second share's examples, e.g. the shipped default with SHARES="0 0.25", MIX and MIX_QUESTIONS=4000 as its
# recipe: no bf16 training, only its one epoch against the 4-bit weights and the W4A16 tables, about 10 minutes).
# Run python from outside the repository: there the source folder kotae/ would shadow the installed package.
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 \
  TOKENIZERS_PARALLELISM=false KOTAE_HOME=${KOTAE_HOME:-/tmp/kotae-home}
repo=${1:?usage: default_adapter.sh REPO}
R=${R:-/tmp/r}
DATA=${DATA:-$repo/../shared/data}
SHARES=${SHARES:-0 0.5 0.25} EPOCHS=${EPOCHS:-2} LR=${LR:-1e-4} SEED=${SEED:-47}
W4_EPOCHS=${W4_EPOCHS:-1} W4_LR=${W4_LR:-5e-5}
# Two engines and two trainings share the card: each engine gets the KV cache of 256 prompts (about 8 GB for
# Gemma 3 270M), sized by kotae rather than by vLLM's measure of free memory at its start, which counts a
# training's growth beside it as the engine's own and can leave the KV cache nothing.
export KOTAE_INDEX=$KOTAE_HOME/indexes/jawiki KOTAE_ADAPTER_DIR=$R/adapters KOTAE_BATCH_MAX_NUM_SEQS=256
base=$KOTAE_HOME/models/gemma-3-270m
w4=$KOTAE_HOME/models/gemma-3-270m-w4a16
HOLD_OUT=${HOLD_OUT:-10}
train_set=$DATA/qa/jsquad-valid-train.jsonl
sets=("$R/sets/jsquad-valid-dev-mixed.jsonl" "$R/sets/jaquad-dev-mixed.jsonl")
[ "$HOLD_OUT" -gt 0 ] && { train_set=$R/sets/train-part.jsonl; sets=("$R/sets/held-out-mixed.jsonl" "${sets[@]}"); }
init_adapter=${INIT:-$repo/adapters/trained/default}
# Checked before the lease's minutes go into pulling and indexing: a wrong path fails here, not in the trainings.
for adapter in "INIT=$init_adapter" ${TRAINED:+"TRAINED=$TRAINED"}; do
  [ -f "${adapter#*=}/adapter_config.json" ] || { echo "$adapter: no adapter_config.json there (give the adapter's own folder)" >&2; exit 2; }
done
for input in "$DATA/jawiki-paragraphs.jsonl" "$DATA"/qa/{jsquad-valid-train,jsquad-valid-dev,jaquad-dev}.jsonl ${MIX:+"$MIX"}; do
  [ -f "$input" ] || { echo "$input: no such file" >&2; exit 2; }
done
mkdir -p "$R/ex" "$R/sets" "$R/logs" "$KOTAE_ADAPTER_DIR"
cd /tmp || exit 1
stamp() { echo "$(date +%s) $*" >> "$R/times.txt"; echo "[$(date +%T)] $*" >> "$R/progress.log"; }
name() { echo "neg$(awk "BEGIN { print int($1 * 100 + 0.5) }")"; }
examples() {  # examples SHARE [SET PREFIX]: SET's examples (default the training part) into PREFIXnegN
  local out=${3:-}$(name "$1")
  python3 -m kotae train examples --base "$base" --data "${2:-$train_set}" --index "$KOTAE_INDEX" \
    --contexts 3 --negatives "$1" --seed "$SEED" --out "$R/ex/$out.jsonl.gz" > "$R/logs/ex-$out.log" 2>&1
  stamp "examples $out (exit $?)"
}
train() {  # train SHARE [BASE]: negN continues INIT; with BASE, negN-w4 continues negN there
  local run=$(name "$1") init=init epochs=$EPOCHS lr=$LR
  [ -n "${2:-}" ] && { init=$run; run=$run-w4; epochs=$W4_EPOCHS; lr=$W4_LR; }
  stamp "train $run"
  local mixed=()
  [ -n "${MIX:-}" ] && mixed=(--examples "$R/ex/mix-$(name "$1").jsonl.gz")
  KOTAE_BASE=${2:-gemma-3-270m} bash "$repo/adapters/gpu/train_default.sh" "$R/ex/$(name "$1").jsonl.gz" \
    "$KOTAE_ADAPTER_DIR/$run" "${mixed[@]}" --init-adapter "$KOTAE_ADAPTER_DIR/$init" --epochs "$epochs" --learning-rate "$lr" \
    --seed "$SEED" > "$R/logs/train-$run.log" 2>&1
  stamp "trained $run (exit $?)"
}
table() {  # table OUT GENERATOR ADAPTER...
  local out=$1 generator=$2; shift 2
  stamp "table $out: $*"
  KOTAE_GENERATOR=$generator python3 "$repo/benchmarks/adapter_table.py" --adapter "$@" --data "${sets[@]}" \
    --out "$R/$out" > "$R/logs/table-$out-$#.log" 2>&1
  stamp "table $out done (exit $?)"
}

stamp start
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$R/gpu.txt"
cp -r "$repo/adapters/trained/default" "$KOTAE_ADAPTER_DIR/default"
cp -r "$init_adapter" "$KOTAE_ADAPTER_DIR/init"
python3 -m kotae models pull > "$R/logs/pull.log" 2>&1; stamp pulled
( if [ "${W4:-1}" = 1 ]; then
    KOTAE_QUANT_SITE=/tmp/site_q python3 -m kotae quantize --model "$base" --out "$w4" \
      --calib "$DATA/jawiki-paragraphs.jsonl" ${W4_GROUP_SIZE:+--group-size "$W4_GROUP_SIZE"} \
      > "$R/logs/quantize.log" 2>&1; stamp "quantized (exit $?)"
  fi
  touch "$R/quantize.done" ) &
quantizing=$!
quantized() { until [ -e "$R/quantize.done" ]; do sleep 5; done; }  # a subshell cannot wait for its sibling
python3 -m kotae index build "$DATA/jawiki-paragraphs.jsonl" --out "$KOTAE_INDEX" > "$R/logs/index.log" 2>&1
stamp "indexed (exit $?)"
if [ "$HOLD_OUT" -gt 0 ]; then  # the held-out articles' questions, and the rest to train on
  python3 - "$DATA/qa/jsquad-valid-train.jsonl" "$R/sets" "$HOLD_OUT" <<'PY'
import hashlib, json, sys
from pathlib import Path
source, out, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
def article(row): return row["qid"].rsplit("p", 1)[0]  # jsquad:a3949p0q1 -> jsquad:a3949
held = set(sorted({article(row) for row in rows}, key=lambda a: hashlib.sha256(a.encode()).hexdigest())[:count])
for name, wanted in (("held-out", True), ("train-part", False)):
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows if (article(row) in held) == wanted]
    (out / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
PY
  stamp "held out $HOLD_OUT articles: $(wc -l < "$R/sets/held-out.jsonl") questions"
  python3 "$repo/benchmarks/noans_set.py" --data "$R/sets/held-out.jsonl" --index "$KOTAE_INDEX" \
    --out "$R/sets/held-out-mixed.jsonl" --with-answerable > "$R/logs/noans-held-out.log" 2>&1
fi
if [ -n "${MIX:-}" ]; then  # MIX_QUESTIONS of the other set, chosen by the sha256 of their ids
  python3 - "$MIX" "$R/sets/mix.jsonl" "${MIX_QUESTIONS:-0}" <<'PY'
import hashlib, json, sys
from pathlib import Path
source, out, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
if count:
    ranked = sorted(rows, key=lambda row: hashlib.sha256(row["qid"].encode()).hexdigest())
    keep = {row["qid"] for row in ranked[:count]}
    rows = [row for row in rows if row["qid"] in keep]
out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
PY
  stamp "mix: $(wc -l < "$R/sets/mix.jsonl") questions of $MIX"
  for share in $SHARES; do examples "$share" "$R/sets/mix.jsonl" mix- & done
fi
for share in $SHARES; do examples "$share" & done
for dev in jsquad-valid-dev jaquad-dev; do
  python3 "$repo/benchmarks/noans_set.py" --data "$DATA/qa/$dev.jsonl" --index "$KOTAE_INDEX" \
    --out "$R/sets/$dev-mixed.jsonl" --with-answerable > "$R/logs/noans-$dev.log" 2>&1
  stamp "noans set $dev (exit $?)"
done
wait $(jobs -p | grep -vx "$quantizing")

# The shipped default on both bases while the new adapters train (it also fills each base's compile cache).
( table bf16 "$base" default; [ "${W4:-1}" = 1 ] && quantized && table w4 "$w4" default ) &
defaults=$!
set -- $SHARES
main=$(name "$2")
if [ -n "${TRAINED:-}" ]; then  # the 4-bit step alone: TRAINED stands in for the second share's run
  cp -r "$TRAINED" "$KOTAE_ADAPTER_DIR/$main"
  quantized && train "$2" "$w4"
  wait $defaults
  table w4-tuned "$w4" "$main-w4"
else
  ( train "$1"; shift 2; for share in "$@"; do train "$share"; done ) &  # the control, then the shares after the second
  others=$!
  train "$2"
  [ "${W4:-1}" = 1 ] && quantized && train "$2" "$w4"
  wait $others $defaults
  runs=()
  for share in $SHARES; do runs+=("$(name "$share")"); done
  table bf16 "$base" default "${runs[@]}" &
  [ "${W4:-1}" = 1 ] && table w4 "$w4" default "$main" "$main-w4"
  wait
fi
cat "$R/bf16/table.md" "$R/w4/table.md" "$R/w4-tuned/table.md" > "$R/table.md" 2>/dev/null
for data in "${sets[@]}"; do  # every run against the shipped default on bf16, question by question
  set_name=$(basename "$data" .jsonl) others=()
  for run in "$R"/*/*-"$set_name"; do [ "$run" = "$R/bf16/default-$set_name" ] || others+=("$run"); done
  python3 -m kotae eval compare "$R/bf16/default-$set_name" "${others[@]}" --paired --markdown \
    > "$R/paired-$set_name.md" 2>&1
done
stamp done
