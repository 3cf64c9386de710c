"""The batch path (`complete_many`, one finished output per request) answers as the streaming path does:
same text, token counts and finish reasons, on a tiny random model whose answers often loop."""

import asyncio
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.models.tiny import build_tiny_gemma
from kotae.rag.engine import Sampling, VLLMEngine

pytestmark = pytest.mark.engine

TOPICS = ["富士山", "琵琶湖", "利根川", "屋久島", "札幌", "奈良", "東京", "大阪", "京都", "沖縄"]
PROMPTS = [f"### 指示:\n質問{i}：{topic}について。\n\n### 応答:\n" for i, topic in enumerate(TOPICS * 2)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    model = build_tiny_gemma(tmp_path_factory.mktemp("batch") / "tiny-gemma")
    settings = Settings(kv_cache_gib=1, max_model_len=512)
    started = VLLMEngine.start(Path(model), settings)
    yield started
    started.shutdown()


def test_complete_many_matches_stream(engine):
    sampling = Sampling(max_tokens=32)

    async def both():
        streamed = await asyncio.gather(*(engine.complete(p, sampling) for p in PROMPTS))
        done: list[int] = []
        batched = await engine.complete_many(PROMPTS, sampling, on_done=lambda: done.append(1))
        return streamed, batched, len(done)

    streamed, batched, done = asyncio.run(both())
    assert done == len(PROMPTS)
    assert [c.text for c in batched] == [c.text for c in streamed]
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in streamed]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in streamed]
    assert any(c.text for c in batched)
