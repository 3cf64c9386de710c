"""The batch path (`complete_many`, one finished output per request) answers as the streaming path does:
same text, token counts and finish reasons, on a tiny random model whose answers often loop.

A random model's greedy text depends on which requests share its batches (their sums round differently),
so the two paths are compared on batches of the same composition: one request at a time. A batch of many
is checked for what does not depend on its composition: every request gets its own finished answer."""

import asyncio
from pathlib import Path

import pytest
from engine_marker import engine_fixture

from kotae.core.config import Settings
from kotae.models.tiny import build_tiny_gemma
from kotae.rag.engine import Completion, Sampling, VLLMEngine

TOPICS = ["富士山", "琵琶湖", "利根川", "屋久島", "札幌", "奈良", "東京", "大阪", "京都", "沖縄"]
PROMPTS = [
    f"### 指示:\n質問：{'、'.join(TOPICS[: n + 1])}について。\n\n### 応答:\n" for n in range(len(TOPICS))
]
"""Each longer than the one before, so that an answer's prompt token count tells whose answer it is."""
SAMPLING = Sampling(max_tokens=32)


@engine_fixture(scope="module")
def engine(tmp_path_factory):
    model = build_tiny_gemma(tmp_path_factory.mktemp("batch") / "tiny-gemma")
    settings = Settings(kv_cache_gib=1, max_model_len=512)
    started = VLLMEngine.start(Path(model), settings)
    yield started
    started.shutdown()


@pytest.fixture(scope="module")
def alone(engine) -> list[tuple[Completion, Completion]]:
    """Each prompt on its own, streamed then batched."""

    async def each_alone() -> list[tuple[Completion, Completion]]:
        pairs = []
        for prompt in PROMPTS:
            streamed = await engine.complete(prompt, SAMPLING)
            [batched] = await engine.complete_many([prompt], SAMPLING)
            pairs.append((streamed, batched))
        return pairs

    return asyncio.run(each_alone())


def test_complete_many_matches_stream(alone):
    streamed, batched = zip(*alone, strict=True)
    assert [c.text for c in batched] == [c.text for c in streamed]
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in streamed]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in streamed]
    assert any(c.text for c in batched)


def test_a_batch_of_many_gives_each_request_its_own_finished_answer(engine, alone):
    done: list[int] = []
    batched = asyncio.run(engine.complete_many(PROMPTS, SAMPLING, on_done=lambda: done.append(1)))
    assert len(done) == len(PROMPTS)
    assert [c.prompt_tokens for c in batched] == [streamed.prompt_tokens for streamed, _ in alone]
    assert len({c.prompt_tokens for c in batched}) == len(PROMPTS), "answers cannot be told apart"
    for completion in batched:
        assert completion.finish_reason in {"stop", "length", "repetition"}
        assert completion.completion_tokens <= SAMPLING.max_tokens
    assert any(c.text for c in batched)
