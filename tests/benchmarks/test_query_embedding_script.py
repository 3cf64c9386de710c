"""`benchmarks/query_embedding.py` times the configured query embedder by batch size, alone and beside a busy
Python thread, then sentence-transformers' own `encode` of the same model, and writes torch's profile of the
largest size."""

import json
from pathlib import Path

import pytest
from benchmark_scripts import QUESTIONS, run_script
from jsonl_files import write_jsonl


def test_each_size_is_timed_and_the_largest_profiled(
    tiny_e5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KOTAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    monkeypatch.setenv("KOTAE_EMBEDDER_BACKEND", "torch")
    qa, profile = write_jsonl(tmp_path / "qa.jsonl", QUESTIONS), tmp_path / "profile.txt"
    args = ["--sizes", "1", "2", "--rounds", "3", "--warmup", "1", "--library", "--busy-thread"]
    args += ["--profile", str(profile)]
    run_script("query_embedding", [str(qa), *args], monkeypatch)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["questions_a_call"] for line in lines] == [1, 2] * 4
    labels = [line["embedder"] for line in lines]
    assert ["encode" in label for label in labels] == [False] * 4 + [True] * 4
    beside = [label.endswith("beside a busy Python thread") for label in labels]
    assert beside == [False, False, True, True] * 2
    for line in lines:
        assert "torch-fp32 on cpu" in line["embedder"] and line["calls"] == 3
        assert line["p99_ms"] >= line["p50_ms"] > 0
    assert "aten::" in profile.read_text(encoding="utf-8")
