#!/usr/bin/env bash
# Trains the default adapter (Gemma 3 270M, JaQuAD train, retrieved contexts) on the lent GPU.
#
# Retrieval happens once, on the CPU machine, so the GPU run needs no index, embedder or Sudachi:
#   kotae index build ../shared/data/jawiki-paragraphs.jsonl --out IDX
#   kotae train examples --base gemma-3-270m --data ../shared/data/qa/jaquad-train.jsonl --index IDX \
#       --out EXAMPLES.jsonl.gz        # ~31.7k prompts, gzip keeps them small enough to carry
# Then on the GPU machine, after scripts/gpu/setup.sh (kotae, TRL and the model in place):
#   bash adapters/gpu/train_default.sh EXAMPLES.jsonl.gz OUT_DIR [more `kotae train sft` options]
#
# One epoch at an effective batch of 32 is ~990 optimizer steps: ~12 min on an H100 with 3 contexts. A device
# call stops after 10 minutes: checkpoints every 200 steps let a stopped run continue with `--resume` (the work
# dir `.OUT_DIR.work` must survive between calls, or travel back and forth with them), and `--max-steps`
# time-boxes a run.
set -euo pipefail
examples=${1:?usage: train_default.sh EXAMPLES OUT_DIR [kotae train sft options]}
out=${2:?usage: train_default.sh EXAMPLES OUT_DIR [kotae train sft options]}
shift 2
export PYTHONPATH=${PYTHONPATH:-/tmp/site} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m kotae train sft --base "${KOTAE_BASE:-gemma-3-270m}" --examples "$examples" --out "$out" \
  --epochs 1 --batch-size 16 --grad-accumulation 2 --learning-rate 2e-4 --r 16 --alpha 16 \
  --eval-fraction 0.02 --eval-steps 200 --probe-every 100 --save-steps 200 --tokenize-workers 8 "$@"
