#!/usr/bin/env bash
# Puts a train_and_eval.sh run's results under $OUT, within what a device call brings back (8 files of 16 MiB,
# about 64 MiB in all): logs, metrics and predictions in one archive, each named adapter as an xz archive in
# pieces of 16 MB (rank 32 in bf16: one piece; rank 256: six, so collect it alone, in calls of its own).
#   bash scripts/gpu/collect.sh [RUN...]      here: cat RUN.tar.xz.part* | tar -xJ
WORK=${WORK:-/tmp/lead}
cd "$WORK" || exit 1
tar -czf "$OUT/results.tar.gz" --exclude='*.safetensors' times gpu.txt ./*.log DONE evals 2>/dev/null
for run in "$@"; do
  [ -d "adapters/$run" ] && tar -cf - -C adapters "$run" | xz -T0 -3 | split -b 16000000 -d - "$OUT/$run.tar.xz.part"
done
ls -la "$OUT"
