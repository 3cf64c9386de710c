"""`benchmarks/adapter_table.py` runs every adapter on every set over one engine, HasAns and NoAns apart where
a set has unanswerable questions, and reads finished runs instead of running them again."""

import json

import pytest
from benchmark_scripts import run_script
from jsonl_files import write_jsonl

from kotae.indexer.build import build_index
from kotae.models.testing import build_random_lora, build_tiny_gemma

pytestmark = pytest.mark.engine
PASSAGES = [
    {"id": "fuji", "title": "富士山", "text": "富士山の標高は3776メートルである。"},
    {"id": "biwa", "title": "琵琶湖", "text": "琵琶湖は滋賀県にある日本最大の湖である。"},
    {"id": "yaku", "title": "屋久島", "text": "屋久島は縄文杉で知られる島である。"},
]
ANSWERABLE = [
    {"qid": "q1", "question": "富士山の標高は？", "answers": ["3776メートル"], "gold_passage_ids": ["fuji"]},
    {"qid": "q2", "question": "日本最大の湖は？", "answers": ["琵琶湖"], "gold_passage_ids": ["biwa"]},
]
NOANS = {
    "qid": "q1:noans",
    "question": "富士山の標高は？",
    "answers": [],
    "answerable": False,
    "gold_passage_ids": ["fuji"],
}


def test_every_adapter_on_every_set_in_one_table(tiny_e5, embedder, tmp_path, monkeypatch):
    gemma = build_tiny_gemma(tmp_path / "tiny-gemma")
    build_random_lora(gemma, tmp_path / "adapters" / "tuned", seed=3)
    build_index([write_jsonl(tmp_path / "corpus.jsonl", PASSAGES)], tmp_path / "index", embedder)
    plain = write_jsonl(tmp_path / "plain.jsonl", ANSWERABLE)
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [*ANSWERABLE, NOANS])
    environment = {
        "KOTAE_HOME": tmp_path / "home",
        "KOTAE_GENERATOR": gemma,
        "KOTAE_EMBEDDER": tiny_e5,
        "KOTAE_INDEX": tmp_path / "index",
        "KOTAE_ADAPTER_DIR": tmp_path / "adapters",
        "KOTAE_DEFAULT_ADAPTER": "",
        "KOTAE_MAX_MODEL_LEN": 1024,
        "KOTAE_MAX_LORAS": 1,
        "KOTAE_MAX_LORA_RANK": 8,
        "KOTAE_MAX_TOKENS": 8,
        "KOTAE_ABSTAIN_MIN_COSINE": 0,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    out = tmp_path / "runs"
    argv = ["--adapter", "", "tuned", "--data", str(mixed), str(plain), "--out", str(out), "--top-k", "2"]

    run_script("adapter_table", argv, monkeypatch)

    folders = ["base-mixed", "base-plain", "tuned-mixed", "tuned-plain"]
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == folders
    rows = (out / "table.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| base", "mixed.jsonl"],
        ["| base", "plain.jsonl"],
        ["| tuned", "mixed.jsonl"],
        ["| tuned", "plain.jsonl"],
    ]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert cells[4] == ("3" if cells[1] == "mixed.jsonl" else "2")
        assert (cells[8] == "—") == (cells[1] == "plain.jsonl"), "HasAns / NoAns only where a set has NoAns"
        assert (cells[9] == "—") == (cells[1] == "plain.jsonl")
    tuned = json.loads((out / "tuned-plain" / "metrics.json").read_text())
    assert tuned["run"]["adapter"] == "tuned"

    def no_engine(*args, **kwargs):
        raise AssertionError("every run is finished: nothing to start an engine for")

    monkeypatch.setattr("kotae.runtime.build_pipeline", no_engine)
    (out / "table.md").unlink()
    run_script("adapter_table", argv, monkeypatch)
    assert (out / "table.md").read_text().splitlines()[2:] == rows
