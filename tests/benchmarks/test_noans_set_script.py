"""`benchmarks/noans_set.py` writes each question's unanswerable twin: asked without its gold article, in the
QA JSONL that `kotae eval` reads."""

from pathlib import Path

import pytest
from benchmark_scripts import PASSAGES, QUESTIONS, run_script
from jsonl_files import write_jsonl

from kotae.evals.datasets import load_dataset
from kotae.indexer.embedder import Embedder


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
