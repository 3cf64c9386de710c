"""What the pipeline and the server ask of a generation engine. Three engines provide it: vLLM inside
kotae (`kotae.rag.engine.VLLMEngine`), vLLM OpenAI servers reached over HTTP
(`kotae.rag.remote_engine.RemoteEngine`) when `Settings.replicas` names them, and transformers inside
kotae (`kotae.rag.transformers_engine.TransformersEngine`) for the architectures vLLM does not serve."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from kotae.core.errors import KotaeError
from kotae.rag.token_counter import TokenCounter

ANSWER_STOPS = ("\n\n", "###")
"""An answer ends at a blank line or at the next section header of the prompt (`kotae.rag.prompt`):
`Sampling` stops there unless told otherwise."""

OnDone = Callable[[], None] | None
"""Called, when given, as each request of a batch finishes (progress counters)."""


class EngineDead(KotaeError):
    """The engine stopped; requests fail fast until kotae is restarted."""


class UnknownAdapter(KotaeError):
    """A request named an adapter that is not loaded."""


Loaded = TypeVar("Loaded")


def adapter_record(adapters: dict[str, Loaded], name: str, remove: bool = False) -> Loaded:
    """An engine's record of adapter `name` (taken out of `adapters` with `remove`); `UnknownAdapter` when
    there is none."""
    record = adapters.pop(name, None) if remove else adapters.get(name)
    if record is None:
        raise UnknownAdapter(f"adapter {name!r} is not loaded")
    return record


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int = 64
    temperature: float = 0.0
    """0 is greedy: answers are reproducible, as evals need."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ANSWER_STOPS
    seed: int | None = None


@dataclass(slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """`stop`, `length`, or `repetition` when the loop guard cut the answer."""
    first_token_s: float | None
    """Seconds from submission to the first generated token."""


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of streamed text; the last event of a stream carries the finished `completion`."""

    text: str
    completion: Completion | None = None


class LoadedAdapterInfo(Protocol):
    """A loaded adapter as the server lists it."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def loaded_at(self) -> float: ...


class Engine(Protocol):
    kind: str
    """What generates: `vllm`, `vllm-replicas` or `transformers`; named at start-up and in `/v1/models`."""
    model_name: str
    """The base model's name: what clients and adapter configs call it."""
    model_path: Path | None
    """The base model's local folder (its content hash is matched against adapters' metadata)."""
    max_lora_rank: int

    count_tokens: TokenCounter
    """The generator's tokenizer, counting as training does (the context budget's unit)."""

    def stream(self, prompt: str, sampling: Sampling, adapter: str | None = None) -> AsyncIterator[Delta]:
        """Deltas of the answer; the last one carries the finished `Completion`."""
        ...

    async def complete(self, prompt: str, sampling: Sampling, adapter: str | None = None) -> Completion: ...

    async def complete_many(
        self, prompts: list[str], sampling: Sampling, adapter: str | None = None, on_done: OnDone = None
    ) -> list[Completion]: ...

    @property
    def adapters(self) -> Mapping[str, LoadedAdapterInfo]: ...

    async def load_adapter(self, name: str, path: Path) -> LoadedAdapterInfo:
        """Load or replace `name`; when this returns, new requests naming it get these weights."""
        ...

    async def unload_adapter(self, name: str) -> None: ...

    @property
    def errored(self) -> bool:
        """True while the engine cannot answer: requests get 503 at once."""
        ...

    async def check_health(self) -> None:
        """Raises when the engine cannot answer."""
        ...

    def shutdown(self) -> None: ...


async def complete_each(
    complete: Callable[[str], Awaitable[Completion]],
    prompts: list[str],
    on_done: OnDone = None,
) -> list[Completion]:
    """`complete_many` for engines whose requests each go out on their own: all at once, in order, with
    `on_done` called as each finishes."""

    async def one(prompt: str) -> Completion:
        completion = await complete(prompt)
        if on_done:
            on_done()
        return completion

    return list(await asyncio.gather(*(one(p) for p in prompts)))
