"""The transformers engine on a tiny random GPT-NeoX-Japanese: waiting requests share `generate` calls, PEFT
adapters load, mix in a batch and unload at run time, stop strings and the loop guard cut answers as on
vLLM, and a streamed answer is the answer `complete` gives.

A random model's greedy text depends on which requests share its batches (their sums round differently), so
answers are compared only between calls that each generate alone."""

import asyncio
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.models.testing import build_random_lora
from kotae.rag.engine_protocol import Completion, EngineDead, Sampling, UnknownAdapter
from kotae.rag.transformers_engine import TransformersEngine

NEOX = ("query_key_value", "dense")
PROMPTS = ["富士山は", "琵琶湖はどこにありますか", "日本で最も長い川は何ですか？答え:"]
GREEDY = Sampling(max_tokens=12)
SAMPLED = Sampling(max_tokens=6, temperature=1.0, seed=0, stop=())
"""Random tokens: nothing loops or stops early, so every answer runs to `max_tokens`."""


@pytest.fixture(scope="module")
def engine(tiny_gpt_neox_japanese: Path) -> Iterator[TransformersEngine]:
    started = TransformersEngine.start(tiny_gpt_neox_japanese, Settings())
    yield started
    started.shutdown()


@pytest.fixture(scope="module")
def loras(tiny_gpt_neox_japanese: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("loras")
    return [
        build_random_lora(tiny_gpt_neox_japanese, root / f"lora-{seed}", seed, target_modules=NEOX)
        for seed in (1, 2)
    ]


@dataclass
class GenerateCalls:
    batches: list[int] = field(default_factory=list)
    """The rows of each `generate` call."""
    generated: list[int] = field(default_factory=list)
    """The tokens each generated."""


@pytest.fixture
def generate_calls(monkeypatch: pytest.MonkeyPatch) -> GenerateCalls:
    """Every `generate` call a model makes from now on."""
    from transformers import GenerationMixin

    calls = GenerateCalls()
    original = GenerationMixin.generate

    def counted(self, *args, **kwargs):
        calls.batches.append(len(kwargs["input_ids"]))
        output = original(self, *args, **kwargs)
        calls.generated.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(GenerationMixin, "generate", counted)
    return calls


async def _streamed(engine: TransformersEngine, prompt: str, sampling: Sampling) -> tuple[str, Completion]:
    deltas = [delta async for delta in engine.stream(prompt, sampling)]
    assert all(delta.completion is None for delta in deltas[:-1])
    completion = deltas[-1].completion
    assert completion is not None
    return "".join(delta.text for delta in deltas), completion


def test_a_streamed_answer_is_the_completed_one(engine: TransformersEngine) -> None:
    for prompt in PROMPTS:
        text, streamed = asyncio.run(_streamed(engine, prompt, GREEDY))
        completed = asyncio.run(engine.complete(prompt, GREEDY))
        assert text == streamed.text == completed.text
        assert streamed.completion_tokens == completed.completion_tokens
        assert streamed.finish_reason == completed.finish_reason
        assert streamed.first_token_s is not None and streamed.first_token_s > 0


def test_token_counts_are_the_tokenizers(engine: TransformersEngine) -> None:
    completions = asyncio.run(engine.complete_many(PROMPTS, SAMPLED))
    for prompt, completion in zip(PROMPTS, completions, strict=True):
        assert completion.prompt_tokens == len(engine.tokenizer(prompt)["input_ids"])
        assert (completion.completion_tokens, completion.finish_reason) == (SAMPLED.max_tokens, "length")
        assert completion.text


def test_waiting_requests_share_one_generate_call(
    engine: TransformersEngine, generate_calls: GenerateCalls
) -> None:
    done: list[int] = []
    completions = asyncio.run(engine.complete_many(PROMPTS * 2, SAMPLED, on_done=lambda: done.append(1)))
    assert generate_calls.batches == [len(PROMPTS) * 2]
    assert len(done) == len(completions) == len(PROMPTS) * 2
    # Each answer is its own request's: the prompt token counts tell them apart.
    assert [c.prompt_tokens for c in completions] == [
        len(engine.tokenizer(p)["input_ids"]) for p in PROMPTS * 2
    ]


def test_a_stop_string_cuts_the_answer_before_it(engine: TransformersEngine) -> None:
    prompt = PROMPTS[0]
    free = asyncio.run(engine.complete(prompt, Sampling(max_tokens=12, stop=())))
    stop = free.text[len(free.text) // 2 :][:2]
    cut = asyncio.run(engine.complete(prompt, Sampling(max_tokens=12, stop=(stop,))))
    assert cut.text == free.text[: free.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < free.completion_tokens


def test_the_loop_guard_stops_a_repeating_answer(engine: TransformersEngine) -> None:
    from kotae.rag.loop_guard import cut_repetition

    looping = [
        c for c in asyncio.run(engine.complete_many(PROMPTS, GREEDY)) if c.finish_reason == "repetition"
    ]
    assert looping, "the tiny model's greedy answers are expected to loop"
    for completion in looping:
        assert completion.completion_tokens < GREEDY.max_tokens
        assert cut_repetition(completion.text) == completion.text


def test_adapters_load_mix_in_one_batch_and_unload(
    engine: TransformersEngine, loras: list[Path], generate_calls: GenerateCalls
) -> None:
    prompt = PROMPTS[1]

    async def scenario() -> None:
        base = await engine.complete(prompt, GREEDY)
        await engine.load_adapter("a", loras[0])
        await engine.load_adapter("b", loras[1])
        assert sorted(engine.adapters) == ["a", "b"]
        alone = {name: await engine.complete(prompt, GREEDY, name) for name in ("a", "b")}
        assert alone["a"].text != alone["b"].text
        assert base.text not in (alone["a"].text, alone["b"].text)
        generate_calls.batches.clear()
        mixed = await asyncio.gather(*(engine.complete(prompt, GREEDY, name) for name in ("a", "b", None)))
        assert generate_calls.batches == [3]
        assert all(c.completion_tokens >= 1 for c in mixed)

        await engine.load_adapter("a", loras[1])  # replaced: new requests get the new weights
        assert (await engine.complete(prompt, GREEDY, "a")).text == alone["b"].text
        await engine.unload_adapter("b")
        with pytest.raises(UnknownAdapter):
            await engine.complete(prompt, GREEDY, "b")
        await engine.unload_adapter("a")
        assert engine.adapters == {}
        assert (await engine.complete(prompt, GREEDY)).text == base.text

    asyncio.run(scenario())


def test_a_shut_down_engine_refuses_requests(tiny_gpt_neox_japanese: Path) -> None:
    engine = TransformersEngine.start(tiny_gpt_neox_japanese, Settings())
    assert asyncio.run(engine.complete(PROMPTS[0], SAMPLED)).completion_tokens == SAMPLED.max_tokens
    engine.shutdown()
    assert engine.errored
    with pytest.raises(EngineDead):
        asyncio.run(engine.complete(PROMPTS[0], SAMPLED))
    with pytest.raises(EngineDead):
        asyncio.run(engine.check_health())


def test_a_stateful_model_batches_only_prompts_of_one_length(
    tiny_rwkv: Path, generate_calls: GenerateCalls
) -> None:
    """RWKV reads no attention mask: a left pad would enter its state and change the answer."""
    engine = TransformersEngine.start(tiny_rwkv, Settings())
    try:
        alone = [asyncio.run(engine.complete(prompt, GREEDY)) for prompt in PROMPTS]
        generate_calls.batches.clear()
        together = asyncio.run(engine.complete_many([*PROMPTS, PROMPTS[0]], GREEDY))
    finally:
        engine.shutdown()
    assert len({c.prompt_tokens for c in alone}) == len(PROMPTS)
    assert sorted(generate_calls.batches) == [1] * (len(PROMPTS) - 1) + [2]
    # Prompts of other lengths went alone, as they did before; the two of one length went together.
    assert [c.text for c in together[1:-1]] == [c.text for c in alone[1:]]
    assert together[0].text == together[-1].text


def test_a_stream_left_early_stops_its_row(engine: TransformersEngine, generate_calls: GenerateCalls) -> None:
    long = Sampling(max_tokens=500, temperature=1.0, seed=0, stop=())

    async def leave_after_the_first_delta() -> Completion:
        async with aclosing(engine.stream(PROMPTS[0], long)) as stream:
            async for delta in stream:
                assert delta.text
                break
        return await engine.complete(PROMPTS[0], SAMPLED)

    assert asyncio.run(leave_after_the_first_delta()).completion_tokens == SAMPLED.max_tokens
    assert generate_calls.batches == [1, 1]
    assert generate_calls.generated[0] < 20, "the row went on after its stream was left"
