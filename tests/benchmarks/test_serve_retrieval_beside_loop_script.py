"""`benchmarks/serve_retrieval_beside_loop.py` retrieves for closed-loop clients through the server's shared
batches, alone and beside a busy event loop at each switch interval, and leaves Python's own interval as it
found it."""

import json
import sys
from pathlib import Path

import pytest
from benchmark_scripts import run_script, served_index

from kotae.indexer.embedder import Embedder


def test_clients_retrieve_alone_then_beside_a_busy_loop_at_each_interval(
    tiny_e5: Path,
    tiny_llama: Path,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    qa = served_index(tmp_path, embedder, tiny_e5, monkeypatch)
    monkeypatch.setenv("KOTAE_GENERATOR", str(tiny_llama))
    python_default = sys.getswitchinterval()

    args = [
        "--clients",
        "4",
        "--generate-ms",
        "5",
        "--seconds",
        "0.5",
        "--busy-ms",
        "2",
        "--switch-ms",
        "5",
        "0.5",
    ]
    run_script("serve_retrieval_beside_loop", [str(qa), *args], monkeypatch)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["beside"] and line["beside"]["switch_ms"] for line in lines] == [None, 5, 0.5]
    for line in lines:
        assert line["questions_per_s"] > 0 and line["batches"] > 0 and 1 <= line["mean_batch"] <= 4
        assert line["retrieve_p99_ms"] >= line["retrieve_p50_ms"] > 0
        assert {"embed", "dense", "tokenize", "bm25", "fuse", "read", "prompt"} <= set(
            line["stage_ms_a_batch"]
        )
    assert all(line["loop_mturns_per_s"] > 0 for line in lines[1:]), "the busy loop ran"
    assert lines[0]["loop_mturns_per_s"] == 0
    assert sys.getswitchinterval() == python_default
