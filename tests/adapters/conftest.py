"""Fixtures for adapter training: a tiny random Gemma 3 with the real tokenizer, a small Japanese corpus
with questions, and one vLLM engine for the whole session."""

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from engine_marker import engine_fixture
from jsonl_files import write_jsonl

from kotae.core.config import Settings

T = TypeVar("T")

# Written for these tests: short passages with one checkable fact each.
PASSAGES = [
    {
        "id": "p1",
        "title": "富士山",
        "text": "富士山は静岡県と山梨県にまたがる日本一高い山で、標高は3776メートルである。",
    },
    {
        "id": "p2",
        "title": "琵琶湖",
        "text": "琵琶湖は滋賀県にある日本最大の湖で、面積は約670平方キロメートルである。",
    },
    {
        "id": "p3",
        "title": "信濃川",
        "text": "信濃川は長野県と新潟県を流れる日本一長い川で、全長は367キロメートルである。",
    },
    {
        "id": "p4",
        "title": "法隆寺",
        "text": "法隆寺は奈良県斑鳩町にある寺院である。聖徳太子によって建てられたと伝えられる。",
    },
    {
        "id": "p5",
        "title": "姫路城",
        "text": "姫路城は兵庫県姫路市にある城で、白い外観から白鷺城とも呼ばれる。",
    },
    {"id": "p6", "title": "屋久島", "text": "屋久島は鹿児島県の島で、樹齢数千年といわれる縄文杉で知られる。"},
]
QUESTIONS = [
    {"qid": "q1", "question": "日本一高い山は何か？", "answers": ["富士山"], "gold_passage_ids": ["p1"]},
    {
        "qid": "q2",
        "question": "日本最大の湖はどこの県にあるか？",
        "answers": ["滋賀県"],
        "gold_passage_ids": ["p2"],
    },
    {
        "qid": "q3",
        "question": "信濃川の全長は何キロメートルか？",
        "answers": ["367キロメートル"],
        "gold_passage_ids": ["p3"],
    },
    {
        "qid": "q4",
        "question": "法隆寺を建てたと伝えられる人物は誰か？",
        "answers": ["聖徳太子"],
        "gold_passage_ids": ["p4"],
    },
    {
        "qid": "q5",
        "question": "白鷺城とも呼ばれる城はどこか？",
        "answers": ["姫路城"],
        "gold_passage_ids": ["p5"],
    },
    {
        "qid": "q6",
        "question": "縄文杉で知られる島はどこか？",
        "answers": ["屋久島"],
        "gold_passage_ids": ["p6"],
    },
]


@pytest.fixture(scope="session")
def passages() -> list[dict[str, str]]:
    return PASSAGES


@pytest.fixture(scope="session")
def questions() -> list[dict[str, Any]]:
    return QUESTIONS


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_jsonl(folder / "passages.jsonl", PASSAGES)
    write_jsonl(folder / "qa.jsonl", QUESTIONS)
    write_jsonl(
        folder / "probe.jsonl", [{"question": q["question"], "answers": q["answers"]} for q in QUESTIONS]
    )
    return folder


CHUNK_CHARS = 30
"""Cuts every test passage into chunks: 法隆寺 into two sentences (its answer in `p4#2`), 信濃川 in the
middle of its answer (that question cannot be answered from one chunk and is dropped)."""


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, embedder: Any) -> Path:
    """The test passages indexed with the session's tiny E5 (root conftest)."""
    from kotae.indexer.build import build_index

    folder = tmp_path_factory.mktemp("index")
    build_index([data_dir / "passages.jsonl"], folder / "index", embedder, chunk_chars=CHUNK_CHARS)
    return folder


@pytest.fixture(scope="session")
def retriever(index_dir: Path, embedder: Any, engine_settings: Settings) -> Any:
    from kotae.indexer.index import Index
    from kotae.rag.retriever import Retriever

    return Retriever(Index.open(index_dir / "index"), embedder, engine_settings)


@pytest.fixture
def invoke_train(
    tiny_e5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[str]], str]:
    """`kotae train ARGS` with the test embedder and context budget; its output, once it succeeded."""
    from typer.testing import CliRunner

    from kotae.adapters.commands import train_app
    from kotae.core.config import get_settings

    monkeypatch.setenv("KOTAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    monkeypatch.setenv("KOTAE_CONTEXT_TOKEN_BUDGET", "200")

    def run(args: list[str]) -> str:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(train_app, args)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return result.output

    return run


WEIGHT_SCALE = 5.0
"""The shared tiny Gemma is initialized as Gemma is (std 0.02): its 64-wide random layers keep every one of
the 262k logits within about ±1 of the others, and no LoRA update makes one answer token win, so the
model never learns the answers. Scaled to std 0.1 (norms untouched), 16 steps overfit the questions."""


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import load_file, save_file

    from kotae.models.testing import build_tiny_gemma

    folder = build_tiny_gemma(tmp_path_factory.mktemp("models") / "tiny-gemma")
    weights = folder / "model.safetensors"
    tensors = {name: t if "norm" in name else t * WEIGHT_SCALE for name, t in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def examples_file(tiny_gemma: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SFT examples in the served format: the gold passage and the next one as a distractor."""
    from transformers import AutoTokenizer

    from kotae.adapters.metadata import ContextsRef, DataRef
    from kotae.adapters.rows import ExampleRow
    from kotae.adapters.sft_examples import (
        BuiltExamples,
        ExamplesInfo,
        completion_for,
        write_examples,
    )
    from kotae.core.passage import Passage
    from kotae.rag.pipeline import make_prompt
    from kotae.rag.prompt import DEFAULT_PROMPTER, PROMPT_VERSION
    from kotae.rag.token_counter import TokenCounter

    count_tokens = TokenCounter(AutoTokenizer.from_pretrained(tiny_gemma))
    budget = 200
    rows = []
    for i, question in enumerate(QUESTIONS):
        contexts = [Passage(**PASSAGES[i]), Passage(**PASSAGES[(i + 1) % len(PASSAGES)])]
        rows.append(
            ExampleRow(
                prompt=make_prompt(question["question"], contexts, count_tokens, budget, DEFAULT_PROMPTER),
                completion=completion_for(question["answers"][0]),
                question=question["question"],
                answers=question["answers"],
                qid=question["qid"],
                passage_ids=[p.id for p in contexts],
            )
        )
    source = DataRef(path="qa.jsonl", sha256="0" * 64, rows=len(rows))
    contexts_ref = ContextsRef(
        index="given", source=source, contexts=2, context_token_budget=budget, retrieval="given", dropped=0
    )
    path = tmp_path_factory.mktemp("examples") / "examples.jsonl"
    write_examples(
        path,
        BuiltExamples(
            rows, ExamplesInfo(prompt_version=PROMPT_VERSION, contexts=contexts_ref, examples=len(rows))
        ),
    )
    return path


@pytest.fixture(scope="session")
def brief_rank8(tiny_gemma: Path, examples_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A brief SFT run of shape `brief_runs.RANK8`, trained once for every test that only reads an adapter
    or copies one: a run costs tens of seconds on 2 cores."""
    from brief_runs import RANK8, brief_sft

    out = tmp_path_factory.mktemp("brief") / "r8"
    brief_sft(tiny_gemma, out, examples_file, lora=RANK8)
    return out


@dataclass
class EngineHandle:
    """The session's vLLM engine and the one event loop it runs on."""

    engine: Any
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)


@pytest.fixture(scope="session")
def engine_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("home"),
        max_model_len=2048,
        max_lora_rank=16,
        context_token_budget=200,
    )


@engine_fixture(scope="session")
def served(tiny_gemma: Path, engine_settings: Settings) -> Iterator[EngineHandle]:
    """One engine for every test (a start costs ~15 s; never two at once on this machine)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = loop.run_until_complete(_launch(tiny_gemma, engine_settings))
    yield EngineHandle(engine, loop)
    engine.shutdown()
    loop.close()


async def _launch(model: Path, settings: Settings) -> Any:
    # Launched inside the loop so that vLLM's output handler belongs to it.
    from kotae.rag.engine import VLLMEngine

    return VLLMEngine.configure(model, settings).launch()
