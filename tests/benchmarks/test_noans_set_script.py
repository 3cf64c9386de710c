"""`benchmarks/noans_set.py` writes each question's unanswerable twin: asked without its gold article, in the
QA JSONL that `kotae eval` reads."""

import json
from pathlib import Path

import pytest
from benchmark_scripts import run_script

from kotae.evals.datasets import load_dataset
from kotae.indexer.embedder import Embedder

PASSAGES = [
    {"id": "fuji-1", "title": "富士山", "text": "富士山は日本で最も高い山である。"},
    {"id": "fuji-2", "title": "富士山", "text": "富士山の標高は3776メートルである。"},
    {"id": "biwa", "title": "琵琶湖", "text": "琵琶湖は滋賀県にある日本最大の湖である。"},
    {"id": "tone", "title": "利根川", "text": "利根川は関東地方を流れる川である。"},
    {"id": "yaku", "title": "屋久島", "text": "屋久島は縄文杉で知られる島である。"},
]
QUESTIONS = [
    {
        "qid": "q1",
        "question": "富士山の標高は？",
        "answers": ["3776メートル"],
        "gold_passage_ids": ["fuji-2"],
    },
    {
        "qid": "q2",
        "question": "日本最大の湖はどこにある？",
        "answers": ["滋賀県"],
        "gold_passage_ids": ["biwa"],
    },
    {
        "qid": "q3",
        "question": "縄文杉で知られる島は？",
        "answers": ["屋久島"],
        "gold_passage_ids": ["nowhere"],
    },
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_noans_twins_lack_the_gold_article(
    tiny_e5: Path, embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kotae.indexer.build import build_index

    build_index([write_jsonl(tmp_path / "corpus.jsonl", PASSAGES)], tmp_path / "index", embedder)
    qa = write_jsonl(tmp_path / "qa.jsonl", QUESTIONS)
    out = tmp_path / "mixed.jsonl"
    monkeypatch.setenv("KOTAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    args = ["--data", str(qa), "--index", str(tmp_path / "index"), "--out", str(out)]
    run_script("noans_set", [*args, "--top-k", "3", "--with-answerable"], monkeypatch)

    items = load_dataset(out)
    assert [(item.qid, item.answerable) for item in items] == [
        ("q1", True),
        ("q2", True),
        ("q3", True),
        ("q1:noans", False),
        ("q2:noans", False),
    ], "q3's gold passage is not in the index: nothing to take out, no twin"
    fuji, biwa = items[3:]
    assert fuji.answers == () and fuji.gold_passage_ids == ("fuji-2",)
    assert fuji.contexts is not None and len(fuji.contexts) == 3
    assert all(passage.title != "富士山" for passage in fuji.contexts), "the whole article is taken out"
    assert biwa.contexts is not None and "biwa" not in {passage.id for passage in biwa.contexts}
