"""`kotae train reranker`: the pairs (gold passage against hard negatives from hybrid retrieval), a short
training run that writes a reranker the retriever loads, and bad input named by file and line."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kotae.adapters.config import RerankerRunConfig
from kotae.adapters.reranker import train_reranker, transformer_folder
from kotae.adapters.reranker_pairs import hard_negatives, questions_with_golds, rerank_pairs
from kotae.core.config import get_settings
from kotae.core.errors import InputError, KotaeError
from kotae.core.passage import Hit, Passage
from kotae.core.qa_jsonl import QAItem
from kotae.indexer.chunking import indexed_text
from kotae.rag.reranker import Reranker


def test_hard_negatives_skip_gold_chunks_and_passages_holding_an_answer() -> None:
    item = QAItem("q4", "法隆寺を建てたと伝えられる人物は誰か？", ("聖徳太子",), gold_passage_ids=("p4",))
    passages = [
        Passage("p4#1", "法隆寺", "法隆寺は奈良県斑鳩町にある寺院である。"),  # a chunk of the gold
        Passage("p1", "富士山", "富士山は日本一高い山である。"),
        Passage("p7", "四天王寺", "四天王寺は聖徳太子が建てた寺である。"),  # holds the answer
        Passage("p8", "聖徳太子", "飛鳥時代の皇族。"),  # holds it in its title
        Passage("p2", "琵琶湖", "琵琶湖は滋賀県にある。"),
        Passage("p5", "姫路城", "姫路城は兵庫県にある。"),
    ]
    hits = [Hit(passage, 1.0 - rank / 10) for rank, passage in enumerate(passages)]

    assert [p.id for p in hard_negatives(item, hits, 2)] == ["p1", "p2"]
    assert [p.id for p in hard_negatives(item, hits, 9)] == ["p1", "p2", "p5"]


def test_pairs_hold_each_gold_passage_and_its_hybrid_negatives(
    data_dir: Path, retriever: Any, questions: list[dict[str, Any]]
) -> None:
    pairs = rerank_pairs(questions_with_golds(data_dir / "qa.jsonl", retriever.index), retriever, negatives=2)

    golds = [pair for pair in pairs if pair.label == 1.0]
    # 信濃川's answer straddles two chunks: no chunk holds it, the question is dropped.
    assert [pair.question for pair in golds] == [q["question"] for q in questions if q["qid"] != "q3"]
    # 法隆寺's answer lies in its second chunk: that chunk, as the embedder reads it, is the gold.
    horyuji = next(pair for pair in golds if "法隆寺" in pair.question)
    assert horyuji.passage == indexed_text(retriever.index.passage("p4#2"))
    for question in questions:
        negatives = [p for p in pairs if p.label == 0.0 and p.question == question["question"]]
        assert len(negatives) <= 2
        assert not any(answer in p.passage for p in negatives for answer in question["answers"])
        gold_id = question["gold_passage_ids"][0]
        chunks = (retriever.index.passage(pid) for pid in (gold_id, *(f"{gold_id}#{n}" for n in range(1, 4))))
        assert not {indexed_text(chunk) for chunk in chunks if chunk} & {p.passage for p in negatives}
    assert sum(pair.label == 0.0 for pair in pairs) > 0


@pytest.mark.slow  # trains a (tiny) cross-encoder: tens of seconds on 2 cores, most of it imports and loads
def test_a_short_run_writes_a_reranker_the_retriever_loads(
    invoke_train: Callable[[list[str]], str], data_dir: Path, index_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "reranker"
    args = ["--data", str(data_dir / "qa.jsonl"), "--index", str(index_dir / "index"), "--out", str(out)]

    options = ["--negatives", "2", "--max-steps", "2", "--batch-size", "4", "--max-length", "64"]
    output = invoke_train(["reranker", *args, *options])

    assert "5 gold" in output and "wrote" in output
    assert {path.name for path in tmp_path.iterdir()} <= {"home", "reranker"}  # no staging left
    scores = Reranker(out).score(
        [("日本一高い山は何か？", Passage("p1", "富士山", "富士山は日本一高い山。"))]
    )
    assert len(scores) == 1


@pytest.fixture
def config(tiny_e5: Path, index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A run's config over `data`, with the test embedder configured."""
    monkeypatch.setenv("KOTAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    get_settings.cache_clear()

    def make(*data: Path) -> RerankerRunConfig:
        return RerankerRunConfig(base=tiny_e5, out=tmp_path / "out", data=data, index=index_dir / "index")

    yield make
    get_settings.cache_clear()


def test_a_missing_file_and_a_question_without_gold_ids_are_named(
    config: Any, questions: list[dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.jsonl"
    with pytest.raises(InputError, match=f"{missing}: no such file"):
        train_reranker(config(missing), Console(quiet=True))
    # The data set's first question, then its second without gold ids.
    first = (data_dir / "qa.jsonl").read_text(encoding="utf-8").splitlines()[0]
    second = json.dumps({**questions[1], "gold_passage_ids": []}, ensure_ascii=False)
    no_gold = tmp_path / "qa.jsonl"
    no_gold.write_text(f"{first}\n{second}\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"{no_gold}:2: `gold_passage_ids` must name"):
        train_reranker(config(no_gold), Console(quiet=True))
    with pytest.raises(KotaeError, match="needs --data"):
        train_reranker(config(), Console(quiet=True))
    assert not (tmp_path / "out").exists()


def test_the_transformer_is_found_in_a_sentence_transformers_folder(tiny_e5: Path, tmp_path: Path) -> None:
    assert (transformer_folder(tiny_e5) / "config.json").is_file()
    nested = tmp_path / "nested"
    (nested / "0_Transformer").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (nested / "modules.json").write_text(json.dumps(modules))
    assert transformer_folder(nested) == nested / "0_Transformer"
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(KotaeError, match="not a model folder"):
        transformer_folder(plain)
    (plain / "config.json").write_text("{}")
    assert transformer_folder(plain) == plain
