"""The batch path (`complete_many`, one finished output per request, and `complete`, a batch of one)
answers as the streaming path does: same text, token counts and finish reasons, on a tiny random model
whose answers often loop. The engine core's loop stop leaves each answer as the loop guard cut it, in fewer
tokens.

A random model's greedy text depends on which requests share its batches (their sums round differently),
so the two paths are compared on batches of the same composition: one request at a time. A batch of many
is checked for what does not depend on its composition: every request gets its own finished answer.

The engine runs on one event loop that the tests drive with `run_until_complete`, as the adapters' tests and
scripts do; the last test shuts it down from outside that loop while it is idle."""

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from decode_streams import recording_decode_streams
from engine_marker import engine_fixture
from tokenizer_copies import counting_tokenizer_copies, wait_for_the_pools_copy

from kotae.core.config import Settings
from kotae.models.testing import build_tiny_gemma
from kotae.rag.detokenizer_prime import PROMPT_TAIL
from kotae.rag.engine import VLLMEngine
from kotae.rag.engine_protocol import ANSWER_STOPS, Completion, Sampling
from kotae.rag.prompt import Prompter
from kotae.rag.tokenizer_pool import COPYING_THREAD

TOPICS = ["富士山", "琵琶湖", "利根川", "屋久島", "札幌", "奈良", "東京", "大阪", "京都", "沖縄"]
PROMPTS = [
    f"### 指示:\n質問：{'、'.join(TOPICS[: n + 1])}について。\n\n### 応答:\n" for n in range(len(TOPICS))
]
"""Each longer than the one before, so that an answer's prompt token count tells whose answer it is."""
SAMPLING = Sampling(max_tokens=32)
BLANK_LINE_TOKEN = 108
"""Gemma 3's token for a blank line."""
KV_CACHE_GIB = 0.25
"""A fraction of a GiB, which vLLM's `VLLM_CPU_KVCACHE_SPACE` could not say."""


@dataclass
class EngineOnLoop:
    engine: VLLMEngine
    loop: asyncio.AbstractEventLoop
    profile_dir: Path
    tokenizer_copies_at_start: list[tuple[str, str]]
    """The tokenizers this process deep-copied while the engine started, and the threads that did."""


@engine_fixture(scope="module")
def served(tmp_path_factory) -> Iterator[EngineOnLoop]:
    work = tmp_path_factory.mktemp("batch")
    model = build_tiny_gemma(work / "tiny-gemma")
    settings = Settings(kv_cache_gib=KV_CACHE_GIB, max_model_len=512)
    loop = asyncio.new_event_loop()

    async def start() -> VLLMEngine:  # inside the loop, so that vLLM's output handler belongs to it
        return VLLMEngine.configure(Path(model), settings, profile_dir=work / "profile").launch()

    with counting_tokenizer_copies() as copies:
        engine = loop.run_until_complete(start())
        wait_for_the_pools_copy()
    started = EngineOnLoop(engine, loop, work / "profile", copies)
    yield started
    started.engine.shutdown()
    loop.close()


@dataclass
class Answers:
    alone: list[tuple[Completion, Completion]]
    """Each prompt on its own, streamed then completed (`complete`)."""
    output_kinds: list[tuple[Any, Any]]
    """What those two handed vLLM as the output kind, for each prompt."""
    loops_generated: list[Completion]
    """Each prompt on its own, batched, with the engine core's loop stop off."""
    together: list[Completion]
    """All prompts in one `complete_many` call."""
    done_calls: int
    """Calls of that call's `on_done`."""
    tokenizer_copies: list[tuple[str, str]]
    """The tokenizers this process deep-copied while `alone` was answered (the engine's first requests)."""
    handed_to_vllm: list[Any]
    """What that call handed vLLM's `generate` as prompts."""
    params_to_vllm: list[Any]
    """And as sampling parameters."""


@pytest.fixture(scope="module")
def answers(served: EngineOnLoop) -> Answers:
    engine = served.engine
    handed: list[Any] = []
    params: list[Any] = []
    generate = engine._llm.generate  # type: ignore[union-attr]

    def recording(prompt: Any, sampling_params: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(prompt)
        params.append(sampling_params)
        return generate(prompt, sampling_params, *args, **kwargs)

    async def streamed(prompt: str) -> Completion:
        deltas = [delta async for delta in engine.stream(prompt, SAMPLING)]
        assert deltas[-1].completion is not None
        return deltas[-1].completion

    async def ask() -> Answers:
        with counting_tokenizer_copies() as copies:
            alone = [(await streamed(prompt), await engine.complete(prompt, SAMPLING)) for prompt in PROMPTS]
        kinds = [sampling_params.output_kind for sampling_params in params]
        output_kinds = list(zip(kinds[::2], kinds[1::2], strict=True))
        engine.ends_loops = False
        try:
            loops_generated = [(await engine.complete_many([prompt], SAMPLING))[0] for prompt in PROMPTS]
        finally:
            engine.ends_loops = True
        done: list[int] = []
        handed.clear()
        params.clear()
        together = await engine.complete_many(PROMPTS, SAMPLING, on_done=lambda: done.append(1))
        return Answers(
            alone,
            output_kinds,
            loops_generated,
            together,
            len(done),
            copies,
            list(handed),
            list(params),
        )

    engine._llm.generate = recording  # type: ignore[union-attr, method-assign]
    try:
        return served.loop.run_until_complete(ask())
    finally:
        del engine._llm.generate  # type: ignore[union-attr]


def test_complete_matches_stream(answers: Answers) -> None:
    streamed, completed = zip(*answers.alone, strict=True)
    assert [c.text for c in completed] == [c.text for c in streamed]
    assert [c.finish_reason for c in completed] == [c.finish_reason for c in streamed]
    assert [c.prompt_tokens for c in completed] == [c.prompt_tokens for c in streamed]
    assert any(c.text for c in completed)


def test_complete_gets_vllms_final_output_alone(answers: Answers) -> None:
    # As vLLM's own server asks for a request that does not stream: no output, no wake-up, per token.
    from vllm.sampling_params import RequestOutputKind

    kinds = {(RequestOutputKind.CUMULATIVE, RequestOutputKind.FINAL_ONLY)}
    assert set(answers.output_kinds) == kinds


def test_the_engine_core_ends_looping_answers_where_the_guard_had_cut_them(answers: Answers) -> None:
    ended = [batched for _, batched in answers.alone]
    generated = answers.loops_generated
    assert [c.text for c in ended] == [c.text for c in generated]
    assert [c.finish_reason for c in ended] == [c.finish_reason for c in generated]
    saved = [g.completion_tokens - e.completion_tokens for e, g in zip(ended, generated, strict=True)]
    assert min(saved) >= 0
    assert max(saved) > 0, "no answer looped: the test's model no longer exercises the loop stop"


def test_a_batch_of_many_gives_each_request_its_own_finished_answer(answers: Answers) -> None:
    together = answers.together
    assert answers.done_calls == len(PROMPTS)
    assert [c.prompt_tokens for c in together] == [streamed.prompt_tokens for streamed, _ in answers.alone]
    assert len({c.prompt_tokens for c in together}) == len(PROMPTS), "answers cannot be told apart"
    for completion in together:
        assert completion.finish_reason in {"stop", "length", "repetition"}
        assert completion.completion_tokens <= SAMPLING.max_tokens
    assert any(c.text for c in together)


def test_a_batch_reaches_vllm_as_the_token_ids_vllm_would_have_made(
    served: EngineOnLoop, answers: Answers
) -> None:
    handed = sorted(answers.handed_to_vllm, key=lambda prompt: len(prompt["prompt_token_ids"]))
    assert [prompt["prompt"] for prompt in handed] == PROMPTS
    vllms_own = served.engine._llm.get_tokenizer()  # type: ignore[union-attr]
    assert [list(prompt["prompt_token_ids"]) for prompt in handed] == [
        vllms_own.encode(prompt) for prompt in PROMPTS
    ]


def test_a_batch_stops_at_stop_tokens_in_vllms_engine_core(answers: Answers) -> None:
    # Read while the engine launched (`kotae.rag.stop_tokens`, whose tests check that answers stay the same).
    for params in answers.params_to_vllm:
        assert params.stop == list(ANSWER_STOPS)
        assert BLANK_LINE_TOKEN in params.stop_token_ids


def test_a_batchs_requests_deep_copy_no_sampling_parameters(
    served: EngineOnLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM copies each request's parameters on the event loop; a deep copy costs 80 µs a request.
    import copy

    import vllm.sampling_params

    deep_copies: list[Any] = []

    def deepcopy(value: Any, *args: Any) -> Any:
        deep_copies.append(value)
        return copy.deepcopy(value, *args)

    monkeypatch.setattr(vllm.sampling_params, "copy", SimpleNamespace(copy=copy.copy, deepcopy=deepcopy))
    completions = served.loop.run_until_complete(served.engine.complete_many(PROMPTS[:3], SAMPLING))
    assert len(completions) == 3
    assert deep_copies == []


def test_a_requests_detokenizer_is_primed_with_its_prompts_tail(served: EngineOnLoop) -> None:
    # vLLM's primes it with the whole prompt and decodes it all at the first answer token, on the event loop.
    long_prompt = PROMPTS[-1] * 4
    assert served.engine.count_tokens(long_prompt) > PROMPT_TAIL
    with recording_decode_streams() as primed_with:
        served.loop.run_until_complete(served.engine.complete_many([long_prompt], SAMPLING))
    assert primed_with[-1] == PROMPT_TAIL  # the stream it keeps: vLLM's own start made one before


def test_a_profiled_batch_leaves_vllms_trace(served: EngineOnLoop, answers: Answers) -> None:
    async def profiled() -> None:
        await served.engine.reset_prefix_cache()
        await served.engine.start_profile()
        await served.engine.complete_many(PROMPTS[:2], SAMPLING)
        await served.engine.stop_profile()

    served.loop.run_until_complete(profiled())
    # The engine core's trace alone: this process's own profiler stays off.
    assert len(list(served.profile_dir.glob("*.pt.trace.json*"))) == 1, "not the engine core's trace alone"


def test_the_engine_core_is_forked_from_the_fork_server(served: EngineOnLoop) -> None:
    # Spawned, the engine core would be this process's own child and import vLLM again.
    fork_servers = [
        child for child in psutil.Process().children() if "multiprocessing.forkserver" in title(child)
    ]
    assert len(fork_servers) == 1
    # vLLM titles its process (setproctitle), as it does a spawned one: tools and tests find it by the title.
    titles = [title(child) for child in fork_servers[0].children()]
    assert any("VLLM::EngineCore" in title for title in titles), titles


def test_the_kv_cache_is_the_size_the_settings_give(served: EngineOnLoop) -> None:
    cache = served.engine._llm.vllm_config.cache_config  # type: ignore[union-attr]
    assert cache.kv_cache_memory_bytes == KV_CACHE_GIB * 2**30
    assert cache.num_gpu_blocks  # what the engine core allocated, reported back at start


def title(process: psutil.Process) -> str:
    """A process's command line as `ps` shows it; empty for one that has ended and not yet been reaped (an
    earlier test's child in this worker)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return ""


def test_the_engine_copies_the_tokenizer_once_off_its_start_and_its_requests(
    served: EngineOnLoop, answers: Answers
) -> None:
    # vLLM's renderer would deep-copy it twice for its pool as the engine starts, and a pool without a copy
    # would make one at the first request, on the event loop (`kotae.rag.tokenizer_pool`).
    assert [thread for _, thread in served.tokenizer_copies_at_start] == [COPYING_THREAD]
    assert answers.tokenizer_copies == []


def test_kotae_encodes_without_copying_vllms_tokenizer(served: EngineOnLoop) -> None:
    # vLLM hands out a tokenizer whose calls borrow from a pool of deep copies, and deep-copies the whole
    # tokenizer for a call that finds them all borrowed (`kotae.rag.engine._read_tokenizer`).
    counter = served.engine.count_tokens
    prompter = Prompter("chat-template", counter.tokenizer)
    with counting_tokenizer_copies() as copied, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda prompt: counter.encode_many([prompt]), PROMPTS * 4))
        list(pool.map(counter, PROMPTS * 4))
        list(pool.map(lambda prompt: prompter.qa(prompt, ["富士山"]), PROMPTS * 4))
    assert copied == []


# Last in the module: it stops the module's engine.
def test_shutdown_outside_the_idle_loop_closes_vllms_sockets(served: EngineOnLoop, answers: Answers) -> None:
    # vLLM's client context: its finaliser terminates it, which blocks for as long as a socket is open.
    context = served.engine._llm.engine_core.resources.ctx  # type: ignore[union-attr]
    served.engine.shutdown()
    terminating = threading.Thread(target=context.term, daemon=True)
    terminating.start()
    terminating.join(timeout=30)
    assert not terminating.is_alive(), "an engine socket was left open: collecting the context would hang"
