"""`benchmarks/bm25_pruning.py` searches each question pruned and reading every posting, and reports equal
results."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from jsonl_files import write_jsonl

from kotae.indexer.bm25 import Bm25Index, Bm25Params
from kotae.indexer.tokenizer import SudachiTokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bm25_pruning.py"
TEXTS = [
    "富士山は日本で最も高い山である。",
    "琵琶湖は日本最大の湖である。",
    "屋久島は縄文杉で知られる島である。",
]
QUESTIONS = ["日本で最も高い山は？", "縄文杉で知られる島は？"]


def test_pruned_and_exhaustive_searches_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = SudachiTokenizer()
    keys = np.arange(len(TEXTS), dtype=np.int64)
    Bm25Index.build(tmp_path / "bm25", [(keys, [tokenizer.tokenize(t) for t in TEXTS])], Bm25Params())
    data = tmp_path / "qa.jsonl"
    rows = [{"question": q, "answers": ["x"]} for q in QUESTIONS]
    write_jsonl(data, rows)
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # it imports index_scale.py beside it
    spec = importlib.util.spec_from_file_location("bm25_pruning", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    sys.modules["bm25_pruning"] = script
    spec.loader.exec_module(script)
    argv = ["bm25_pruning.py", "--bm25", str(tmp_path / "bm25"), "--data", str(data), "--k", "1", "3"]
    monkeypatch.setattr(sys, "argv", argv)

    script.main()

    report = json.loads(capsys.readouterr().out)
    assert report["passages"] == 3 and report["questions"] == 2
    assert [report["by_k"][k]["equal results"] for k in ("1", "3")] == ["2/2", "2/2"]
