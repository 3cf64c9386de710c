"""`kotae eval` in-process on tiny random models built from the real configs and tokenizers: a real
vLLM engine, a real index (dense + BM25), the same pipeline the server runs. The answers are noise;
what is checked is that every stage runs, is measured and is written."""

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from eval_corpus import PASSAGES, QUESTIONS, corpus_rows
from jsonl_files import write_jsonl
from typer.testing import CliRunner

from kotae.core.config import Settings, get_settings
from kotae.evals.commands import eval_app
from kotae.evals.config import EvalConfig
from kotae.evals.runner import evaluate
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.models.testing import build_tiny_gemma
from kotae.rag.collections import Collections
from kotae.rag.engine import VLLMEngine
from kotae.rag.engine_protocol import UnknownAdapter
from kotae.rag.pipeline import Pipeline
from kotae.rag.prompt import PROMPT_VERSION
from kotae.rag.retriever import Retriever

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_e5, embedder):
    """Tiny generator and embedder, an index of PASSAGES, and a QA file that also carries contexts."""
    root = tmp_path_factory.mktemp("e2e")
    gemma = build_tiny_gemma(root / "tiny-gemma")
    corpus = write_jsonl(root / "corpus.jsonl", corpus_rows())
    build_index([corpus], root / "index", embedder)
    texts = {pid: (title, text) for pid, title, text in PASSAGES}
    rows = [
        {
            "qid": qid,
            "question": question,
            "answers": answers,
            "gold_passage_ids": [gold],
            "contexts": [{"id": gold, "title": texts[gold][0], "text": texts[gold][1]}],
        }
        for qid, question, answers, gold in QUESTIONS
    ]
    qa = write_jsonl(root / "qa.jsonl", rows)
    (root / "adapters").mkdir()
    environment = {
        "KOTAE_HOME": str(root / "home"),
        "KOTAE_GENERATOR": str(gemma),
        "KOTAE_EMBEDDER": str(tiny_e5),
        "KOTAE_INDEX": str(root / "index"),
        "KOTAE_ADAPTER_DIR": str(root / "adapters"),
        "KOTAE_DEFAULT_ADAPTER": "",
        "KOTAE_MAX_MODEL_LEN": "1024",
        "KOTAE_MAX_LORAS": "1",
        "KOTAE_MAX_LORA_RANK": "8",
        "KOTAE_MAX_TOKENS": "16",
        "KOTAE_ABSTAIN_MIN_COSINE": "0",
    }
    return root, qa, environment


def test_eval_command_in_process_with_retrieval(workspace, monkeypatch):
    """The baseline command's path: settings → build_pipeline → all questions at once → run directory, the
    questions ranked in a process of their own (as on a GPU)."""
    root, qa, environment = workspace
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KOTAE_EVAL_RETRIEVAL_PROCESS", "true")
    get_settings.cache_clear()
    out = root / "retrieved"
    try:
        result = CliRunner().invoke(eval_app, ["--data", str(qa), "--top-k", "2", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output

    metrics = json.loads((out / "metrics.json").read_text())
    expected_run = {
        "model": "tiny-gemma",
        "adapter": None,
        "dataset": "qa.jsonl",
        "n": 4,
        "contexts": "retrieved",
        "top_k": 2,
        "retrieval_depth": 20,
        "target": "inprocess",
        "prompt_version": PROMPT_VERSION,
        "max_tokens": 16,
        "temperature": 0.0,
    }
    assert {key: metrics["run"][key] for key in expected_run} == expected_run
    assert metrics["run"]["quantization"] and metrics["run"]["device"].startswith("cpu")
    # Six passages, ranked 20 deep: every gold is somewhere in the ranking.
    assert metrics["retrieval"]["n"] == 4 and metrics["retrieval"]["recall_at"]["20"] == 1.0
    assert 0.0 < metrics["retrieval"]["mrr"] <= 1.0
    speed = metrics["speed"]
    assert speed["load_s"] > 0 and speed["wall_s"] > 0 and speed["generate"]["p95_ms"] > 0
    # Hybrid retrieval in one batch of four, each stage timed; vLLM compiled into kotae's home.
    assert speed["batches"] == 1
    assert speed["retrieve"]["note"].startswith("retrieved in batches in a process of its own:")
    assert set(speed["batch_stages_ms"]) == {"embed", "dense", "tokenize", "bm25", "fuse", "read", "prompt"}
    assert os.environ["VLLM_CACHE_ROOT"] == str(root / "home" / "cache" / "vllm")
    assert metrics["memory"]["peak_rss_mb"] > 0 and metrics["errors"] == 0

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["qid"] for row in rows] == ["q1", "q2", "q3", "q4"]
    assert all(len(row["sources"]) == 2 and len(row["retrieved_ids"]) == len(PASSAGES) for row in rows)
    assert (out / "row.md").read_text().startswith("| tiny-gemma | base |")


def test_given_contexts_on_a_pipeline_built_by_the_caller(workspace, monkeypatch):
    """`--contexts given`: the dataset's passages go into the prompt; retrieval is not scored. Two runs
    share one engine inside one event loop, which is how notebooks and benchmarks call `evaluate`."""
    root, qa, environment = workspace
    python_default = sys.getswitchinterval()
    switch_intervals: list[float] = []  # as each retrieval batch saw it
    batch_started: list[float] = []
    search_many = Retriever.search_many

    def search_many_recording(self, *args, **kwargs):
        switch_intervals.append(sys.getswitchinterval())
        batch_started.append(time.perf_counter())
        return search_many(self, *args, **kwargs)

    # The next batch submitted holds the event loop for half a second, as the engine's outputs can.
    hold_loop = {"next": False, "released": 0.0, "refuse": False}
    answer_prepared = Pipeline.answer_prepared

    def answer_prepared_holding_the_loop(self, *args, **kwargs):
        if hold_loop["refuse"]:
            raise RuntimeError("the engine refused the batch")
        if hold_loop["next"]:
            hold_loop["next"] = False
            time.sleep(0.5)
            hold_loop["released"] = time.perf_counter()
        return answer_prepared(self, *args, **kwargs)

    monkeypatch.setattr(Retriever, "search_many", search_many_recording)
    monkeypatch.setattr(Pipeline, "answer_prepared", answer_prepared_holding_the_loop)
    settings = Settings(
        home=root / "home",
        adapter_dir=root / "adapters",
        default_adapter="",
        max_model_len=1024,
        max_loras=1,
        max_lora_rank=8,
        max_tokens=16,
    )
    embedder = Embedder(Path(environment["KOTAE_EMBEDDER"]))
    retriever = Retriever(Index.open(root / "index"), embedder, settings)
    engine = VLLMEngine.configure(Path(environment["KOTAE_GENERATOR"]), settings).launch()
    pipeline = Pipeline(Collections.of(retriever), engine, settings)

    mixed = with_noans_twins(qa, root / "mixed.jsonl")

    def configured(**update: object) -> Pipeline:
        return Pipeline(pipeline.collections, engine, settings.model_copy(update=update))

    async def runs():
        given = await evaluate(EvalConfig(qa, contexts="given", out=root / "given"), pipeline)
        limited = await evaluate(EvalConfig(qa, contexts="given", limit=2, out=root / "given-2"), pipeline)
        with pytest.raises(UnknownAdapter, match=r"adapter 'nosuch' is not loaded; loaded from .*: none"):
            await evaluate(EvalConfig(qa, adapter="nosuch", out=root / "nosuch"), pipeline)
        # Gate off: the tiny model never writes the abstention text. Gate at cosine 1: nothing reaches it.
        asked = await evaluate(
            EvalConfig(mixed, out=root / "mixed-asked"), configured(abstain_min_cosine=0.0)
        )
        stopped = await evaluate(
            EvalConfig(mixed, out=root / "mixed-stopped"), configured(abstain_min_cosine=1.0)
        )
        # Retrieval in batches of 1, 2, 3 and 2, each generating while the next is retrieved, against all 8
        # at once (and Python's own thread switch interval).
        switch_intervals.clear()
        batch_started.clear()
        hold_loop["next"] = True
        overlapped = await evaluate(
            EvalConfig(mixed, out=root / "overlapped"),
            configured(abstain_min_cosine=0.0, eval_retrieval_batch=3, eval_switch_interval_ms=0.5),
        )
        assert switch_intervals == [0.0005] * 4 and sys.getswitchinterval() == python_default
        assert batch_started[1] < hold_loop["released"], (
            "the second batch is retrieved while the event loop is busy submitting the first"
        )
        switch_intervals.clear()
        together = await evaluate(
            EvalConfig(mixed, out=root / "together"),
            configured(abstain_min_cosine=0.0, eval_retrieval_batch=0, eval_switch_interval_ms=0),
        )
        assert switch_intervals == [python_default]
        hold_loop["refuse"] = True  # a batch that cannot be submitted fails the run, not only its own answers
        with pytest.raises(RuntimeError, match="the engine refused the batch"):
            await evaluate(EvalConfig(mixed, out=root / "refused"), configured(eval_retrieval_batch=3))
        hold_loop["refuse"] = False
        return given, limited, asked, stopped, overlapped, together

    try:
        given, limited, asked, stopped, overlapped, together = asyncio.run(runs())
    finally:
        pipeline.engine.shutdown()
    assert given.metrics.retrieval is None and given.metrics.speed.retrieve is None
    assert given.metrics.run.retrieval_depth is None and given.metrics.speed.load_s is None
    assert [row.sources[0].id for row in given.predictions] == ["p1", "p2", "p4", "p6"]
    assert all(row.retrieved_ids is None and row.recall_at is None for row in given.predictions)
    assert limited.metrics.run.n == 2
    assert not (root / "nosuch").exists(), "an unknown adapter fails the run before anything is written"

    split = asked.metrics.abstention
    assert split is not None and (split.has_ans_n, split.no_ans_n) == (4, 4)
    assert (split.no_ans_accuracy, split.has_ans_abstained) == (0.0, 0.0)
    assert asked.metrics.retrieval is not None and asked.metrics.retrieval.n == 4, "NoAns: no recall"
    golds = {qid: gold for qid, _, _, gold in QUESTIONS}
    for row in asked.predictions:
        if not row.answerable:
            gold = golds[row.qid.removesuffix(":noans")]
            assert row.retrieved_ids and gold not in row.retrieved_ids, "asked without its gold article"
    split = stopped.metrics.abstention
    assert split is not None and (split.no_ans_accuracy, split.has_ans_abstained) == (1.0, 1.0)
    assert stopped.metrics.answer.exact == 0.5, "every NoAns question right, every HasAns one wrong"

    assert (overlapped.metrics.speed.batches, together.metrics.speed.batches) == (4, 1)
    for run in (overlapped, together):
        retrieved_s = run.metrics.speed.retrieved_s
        assert retrieved_s is not None and 0 < retrieved_s < run.metrics.speed.wall_s
    assert [row.prediction for row in together.predictions] == [row.prediction for row in asked.predictions]
    for batched, whole in zip(overlapped.predictions, together.predictions, strict=True):
        assert (batched.qid, batched.retrieved_ids, batched.sources) == (
            whole.qid,
            whole.retrieved_ids,
            whole.sources,
        )
        assert (batched.prediction, batched.abstained) == (whole.prediction, whole.abstained), (
            "overlap changed it"
        )


def with_noans_twins(qa: Path, out: Path) -> Path:
    """`qa` and, after it, each question's unanswerable twin (asked without its gold article)."""
    rows = [json.loads(line) for line in qa.read_text(encoding="utf-8").splitlines()]
    twins = [
        {"qid": row["qid"] + ":noans", "question": row["question"], "answers": [], "answerable": False,
         "gold_passage_ids": row["gold_passage_ids"]}
        for row in rows
    ]  # fmt: skip
    return write_jsonl(out, rows + twins)
