"""Runs a script of `benchmarks/` in the test's process, as `python benchmarks/NAME.py ARGS` would; a small
corpus and questions with gold passages for the scripts that retrieve."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from jsonl_files import write_jsonl

from kotae.core.config import get_settings
from kotae.indexer.embedder import Embedder

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

PASSAGES = [
    {"id": "fuji-1", "title": "富士山", "text": "富士山は日本で最も高い山である。"},
    {"id": "fuji-2", "title": "富士山", "text": "富士山の標高は3776メートルである。"},
    {"id": "biwa", "title": "琵琶湖", "text": "琵琶湖は滋賀県にある日本最大の湖である。"},
    {"id": "tone", "title": "利根川", "text": "利根川は関東地方を流れる川である。"},
    {"id": "yaku", "title": "屋久島", "text": "屋久島は縄文杉で知られる島である。"},
]
"""Five passages of four articles (富士山 has two)."""
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
"""Questions on `PASSAGES`; q3's gold passage is not among them."""


def served_index(root: Path, embedder: Embedder, tiny_e5: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An index of `PASSAGES` under `root`, built by `embedder` and served to a script (`KOTAE_INDEX`, with
    `KOTAE_HOME` and `KOTAE_EMBEDDER`); the QA file of `QUESTIONS` beside it."""
    from kotae.indexer.build import build_index

    build_index([write_jsonl(root / "corpus.jsonl", PASSAGES)], root / "index", embedder)
    monkeypatch.setenv("KOTAE_HOME", str(root / "home"))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    monkeypatch.setenv("KOTAE_INDEX", str(root / "index"))
    return write_jsonl(root / "qa.jsonl", QUESTIONS)


def load_script(name: str) -> ModuleType:
    """`benchmarks/NAME.py` as a module, its `main` not run; the scripts beside it importable while it loads,
    as for `python benchmarks/NAME.py`."""
    spec = importlib.util.spec_from_file_location(f"kotae_benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(script)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return script


def run_script(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`benchmarks/NAME.py ARGS`, with settings read afresh from the environment the test set."""
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    script = load_script(name)
    get_settings.cache_clear()
    try:
        script.main()
    finally:
        get_settings.cache_clear()
    return script
