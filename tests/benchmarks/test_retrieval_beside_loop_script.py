"""`benchmarks/retrieval_beside_loop.py` retrieves the eval's batches alone and beside a busy thread at each
switch interval, in this process and in one of its own, and leaves Python's own interval as it found it."""

import json
import sys
from pathlib import Path

import pytest
from benchmark_scripts import run_script, served_index

from kotae.indexer.embedder import Embedder


def test_one_line_alone_and_one_per_switch_interval(
    tiny_e5: Path,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    qa = served_index(tmp_path, embedder, tiny_e5, monkeypatch)
    monkeypatch.setenv("KOTAE_EVAL_RETRIEVAL_BATCH", "4")  # batches of 1 and 2
    python_default = sys.getswitchinterval()

    args = [str(qa), "--rounds", "1", "--busy-ms", "2", "--idle-ms", "1", "--switch-ms", "5", "0.5"]
    run_script("retrieval_beside_loop", [*args, "--apart"], monkeypatch)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["retrieved_in"], line["beside"] and line["beside"]["switch_ms"]) for line in lines] == [
        ("thread", None),
        ("thread", 5),
        ("thread", 0.5),
        ("process", None),
        ("process", 5),
        ("process", 0.5),
    ]
    assert all(line["questions"] == 3 and line["wall_ms"] >= line["min_ms"] >= 0 for line in lines)
    stages = {"embed", "dense", "tokenize", "bm25", "fuse", "read"}
    assert all(stages <= set(line["stages_ms"]) for line in lines)
    assert all(line["loop_mturns_per_s"] > 0 for line in lines if line["beside"]), "the busy thread ran"
    assert sys.getswitchinterval() == python_default
