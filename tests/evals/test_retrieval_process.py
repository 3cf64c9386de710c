"""The eval's retrieval in a spawned process of its own ranks as it does in the eval's process, and is
started beside the pipeline's build."""

import asyncio
import threading

import pytest
from eval_corpus import QUESTIONS as EVAL_QUESTIONS
from eval_corpus import corpus_rows
from jsonl_files import write_jsonl

from kotae import runtime
from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.evals import runner
from kotae.evals.retrieval_process import RetrievalJob, RetrievalProcess, search_job
from kotae.evals.targets import AskOptions
from kotae.indexer.build import build_index
from kotae.rag.engine_protocol import Sampling
from kotae.runtime import open_retriever

QUESTIONS = [question for _, question, _, _ in EVAL_QUESTIONS]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_e5, embedder) -> Settings:
    root = tmp_path_factory.mktemp("retrieval-process")
    corpus = write_jsonl(root / "corpus.jsonl", corpus_rows())
    build_index([corpus], root / "index", embedder)
    return Settings(home=root / "home", index=root / "index", embedder=str(tiny_e5))


def ranked(batches) -> list[list[tuple[list[str], list[str] | None]]]:
    return [[([hit.passage.id for hit in r.hits], r.ranked_ids) for r in b.retrievals] for b in batches]


def scores(batches) -> list[float]:
    return [hit.score for b in batches for r in b.retrievals for hit in r.hits]


def test_the_process_ranks_each_batch_as_this_process_does(settings):
    # The second question asked without its gold article, as an unanswerable one is.
    job = RetrievalJob(
        QUESTIONS,
        excluded_titles=[frozenset(), frozenset({"琵琶湖"}), frozenset(), frozenset()],
        top_k=2,
        depth=4,
        batches=[slice(0, 1), slice(1, 3), slice(3, 4)],
    )
    here = list(search_job(open_retriever(settings), job))
    process = RetrievalProcess.start(settings)
    try:
        apart = list(process.search_batches(job))
        again = list(process.search_batches(job))  # a second job on the same process
        next(process.search_batches(job))  # a job left part-way
    finally:
        process.close()
    assert process.exitcode == 0, "the process ended by itself once its connection closed"

    assert ranked(apart) == ranked(here) == ranked(again)
    assert [len(b.retrievals) for b in apart] == [1, 2, 1]
    hits, ranking = ranked(apart)[1][0]
    assert "p2" not in hits and ranking is not None and "p2" not in ranking
    assert scores(apart) == pytest.approx(scores(here))
    # Every question embedded with the first batch; each batch ranked and timed on its own.
    assert set(apart[0].stage_ms) >= {"embed", "dense", "tokenize", "bm25", "fuse", "read"}
    assert "embed" not in apart[1].stage_ms and apart[1].retrieve_ms > 0


def test_a_retriever_that_cannot_open_fails_the_wait_with_its_reason(settings, tmp_path):
    process = RetrievalProcess.start(settings.model_copy(update={"index": tmp_path / "missing"}))
    try:
        with pytest.raises(KotaeError, match=r"the eval's retrieval process failed: .*missing"):
            process.wait_ready()
    finally:
        process.close()


def test_the_process_is_decided_on_beside_the_pipelines_build(monkeypatch, tmp_path):
    # Deciding imports vLLM; done before the build, it kept the build from overlapping that import.
    building = threading.Event()
    decided_in: list[str] = []

    def deciding(settings, ask) -> bool:
        decided_in.append(threading.current_thread().name)
        assert building.wait(timeout=20), "decided before the pipeline's build began"
        return False

    def build(settings, workload):
        building.set()
        raise KotaeError("the build stops here")

    monkeypatch.setattr(runner, "_retrieves_apart", deciding)
    monkeypatch.setattr(runtime, "build_pipeline", build)
    ask = AskOptions(top_k=2, retrieval_depth=4, contexts="retrieved", adapter=None, sampling=Sampling())
    with pytest.raises(KotaeError, match="the build stops here"):
        asyncio.run(runner._run_in_process([], ask, None, Settings(index=tmp_path), lambda: None))
    assert len(decided_in) == 1 and decided_in[0] != threading.main_thread().name
