"""`benchmarks/index_scale.py query` scores gold passages as the evals do (a chunk of a long gold paragraph,
`doc#2`, finds it), and sweeps IVF-PQ's nprobe."""

import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from jsonl_files import write_jsonl

from kotae.core.config import Settings
from kotae.core.passage import Passage
from kotae.core.qa_jsonl import QAItem
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.layout import IndexType
from kotae.rag.retriever import Retriever

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "index_scale.py"
LONG = "屋久島は鹿児島県の島である。" * 6 + "縄文杉は屋久島に生える樹齢数千年の杉である。"
PASSAGES = [
    {"id": "yaku", "title": "屋久島", "text": LONG},
    {"id": "fuji", "title": "富士山", "text": "富士山の標高は3776メートルである。"},
    {"id": "biwa", "title": "琵琶湖", "text": "琵琶湖は滋賀県にある日本最大の湖である。"},
]
ITEMS = [QAItem("q1", "縄文杉が生える島は？", ("屋久島",), gold_passage_ids=("yaku",))]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("index_scale", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["index_scale"] = module
    spec.loader.exec_module(module)
    return module


def retriever_over(
    tmp_path: Path, embedder: Embedder, index_type: IndexType, params: Mapping[str, int]
) -> Iterator[Retriever]:
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, PASSAGES)
    build_index([corpus], tmp_path / "index", embedder, index_type, params, chunk_chars=60, workers=0)
    index = Index.open(tmp_path / "index", gpu=False)
    assert index.passage("yaku") is None and index.passage("yaku#2") is not None
    yield Retriever(index, embedder, Settings())
    index.close()


@pytest.fixture
def flat(tmp_path: Path, embedder: Embedder) -> Iterator[Retriever]:
    yield from retriever_over(tmp_path, embedder, "flat", {})


@pytest.fixture
def ivfpq(tmp_path: Path, embedder: Embedder) -> Iterator[Retriever]:
    yield from retriever_over(tmp_path, embedder, "ivfpq", {"nbits": 2, "nlist": 2})


def test_a_chunk_of_the_gold_paragraph_counts_as_found(script: ModuleType, flat: Retriever) -> None:
    report = script.recall(flat, ITEMS)

    # Three documents, five passages: every ranking holds the gold paragraph's chunks within 50.
    assert report["questions"] == 1
    assert report["dense@50"] == report["bm25@50"] == report["hybrid@50"] == 1.0
    assert report["bm25@5"] == 1.0 and report["hybrid@5 holds an answer"] == 1.0


def test_ivfpq_recall_by_nprobe_and_searched_exhaustively(script: ModuleType, ivfpq: Retriever) -> None:
    sweep = script.nprobe_sweep(ivfpq, ITEMS, ["富士山の標高は？"], [1, 2])

    report = script.recall(ivfpq, ITEMS)
    assert report["dense exhaustive@50"] == report["hybrid exhaustive@50"] == 1.0
    assert list(sweep) == ["1", "2"]
    # Both lists probed: every passage is a candidate, so the gold paragraph's chunks are within 50.
    assert sweep["2"]["dense@50"] == 1.0 and set(sweep["2"]["dense_ms"]) == {"p50", "p99"}


def test_every_question_is_scored_when_there_are_more_questions_than_candidates(
    script: ModuleType, ivfpq: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(script, "DEPTH", 1)
    second = QAItem("q2", "富士山の標高は？", ("3776",), gold_passage_ids=("fuji",))

    report = script.recall(ivfpq, [*ITEMS, second])

    assert report["questions"] == 2 and "hybrid exhaustive@1" in report


class GoldLast:
    """A reranker that puts the gold paragraph's chunks below every other passage."""

    def score(self, pairs: Sequence[tuple[str, Passage]]) -> list[float]:
        return [-1.0 if passage.id.startswith("yaku") else 0.0 for _, passage in pairs]


def test_with_a_reranker_the_reranked_hybrid_figures_and_stage_are_reported(
    script: ModuleType, flat: Retriever
) -> None:
    reranked = Retriever(flat.index, flat.embedder, Settings(rerank_depth=3), reranker=GoldLast())

    report = script.recall(reranked, ITEMS)
    latency = script.stage_latencies(reranked, ["縄文杉が生える島は？"])

    # The fused top 3 re-ordered: the gold chunks among them go last, and the top 5 still holds them.
    assert report["hybrid reranked@5"] == report["hybrid reranked@50"] == 1.0
    assert "hybrid reranked@5 holds an answer" in report and "rerank" in latency
    assert "hybrid reranked@5" not in script.recall(flat, ITEMS) and "rerank" not in script.stage_latencies(
        flat, ["富士山の標高は？"]
    )


def test_reranked_recall_at_other_depths_is_reported_beside_the_served_one(
    script: ModuleType, flat: Retriever
) -> None:
    reranked = Retriever(flat.index, flat.embedder, Settings(rerank_depth=3), reranker=GoldLast())

    report = script.recall(reranked, ITEMS, [1, 3, 5])

    # Depth 3 is the served one; 1 and 5 get names of their own.
    assert {key for key in report if key.startswith("hybrid reranked") and key.endswith("@5")} == {
        "hybrid reranked@5",
        "hybrid reranked top 1@5",
        "hybrid reranked top 5@5",
    }
