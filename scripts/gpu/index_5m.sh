#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu/setup_index.sh: the issue-16 run. GPU embedding speed, the
# 1.3M-article (≈5.5M-passage) stand-in dump, its build with the real paragraphs beside it (timed, memory
# sampled), a build of the real paragraphs alone, then recall@5 and per-question latency of both indexes
# side by side. Reports go to $R (default /tmp/r); `times.txt` stamps each step. Run it detached and keep
# a call alive while it works (the machine goes back 30 s after a call ends):
#   setsid nohup bash scripts/gpu/index_5m.sh "$PWD" > /tmp/index_5m.log 2>&1 &
#   sleep 540; cat /tmp/r/times.txt; cp /tmp/r/* "$OUT"/      (repeat until "queried")
# Run python from outside the repository: there the source folder kotae/ would shadow the installed package.
set -u
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
repo=$1
R=${R:-/tmp/r}
mkdir -p "$R"
cd /tmp || exit 1
data=$repo/../shared/data
stamp() { echo "$(date +%s) $*" >> "$R/times.txt"; }
stamp start
python3 -c "from pathlib import Path; from kotae.models.store import ModelStore; ModelStore(Path.home() / '.cache' / 'kotae').pull_embedder()" > "$R/pull.txt" 2>&1
stamp pulled
timeout 300 python3 "$repo/benchmarks/embedding_speed.py" --device cuda --out "$R/embedding-gpu.json" > "$R/embedding.log" 2>&1
stamp embedded
python3 "$repo/benchmarks/jawiki_dump.py" --out /tmp/jawiki-5m.xml.bz2 --workers "$(nproc)" > "$R/dump.txt" 2>&1
stamp dumped
python3 "$repo/benchmarks/index_scale.py" build --out /tmp/idx5m --report "$R/build5m.json" -- \
  /tmp/jawiki-5m.xml.bz2 "$data/jawiki-paragraphs.jsonl" --type ivfpq > "$R/build5m.log" 2>&1
stamp built
python3 "$repo/benchmarks/index_scale.py" build --out /tmp/idx13k --report "$R/build13k.json" -- \
  "$data/jawiki-paragraphs.jsonl" > "$R/build13k.log" 2>&1
stamp built13k
python3 "$repo/benchmarks/index_scale.py" query --index /tmp/idx5m --index /tmp/idx13k \
  --report "$R/query.json" > "$R/query.log" 2>&1
stamp queried
