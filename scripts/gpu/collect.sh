#!/usr/bin/env bash
# Puts a train_and_eval.sh run's results under $OUT, within what a device call brings back (8 files of 16 MiB):
# logs, metrics and predictions in one archive, each trained adapter (LoRA r32 in bf16: ~12 MB) in its own.
#   bash scripts/gpu/collect.sh RUN...
WORK=${WORK:-/tmp/lead}
cd "$WORK" || exit 1
tar -czf "$OUT/results.tar.gz" --exclude='*.safetensors' times gpu.txt ./*.log DONE evals 2>/dev/null
for run in "$@"; do
  [ -d "adapters/$run" ] && tar -czf "$OUT/$run.tar.gz" -C adapters "$run"
done
ls -la "$OUT"
