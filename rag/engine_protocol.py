"""What the pipeline and the server ask of a generation engine. Two engines provide it: vLLM inside
kotae (`kotae.rag.engine.VLLMEngine`) and vLLM OpenAI servers reached over HTTP
(`kotae.rag.remote_engine.RemoteEngine`); `Settings.replicas` picks."""

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Protocol

from kotae.rag.engine import Completion, Delta, Sampling
from kotae.rag.token_counter import TokenCounter


class LoadedAdapterInfo(Protocol):
    """A loaded adapter as the server lists it."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def loaded_at(self) -> float: ...


class Engine(Protocol):
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
        self,
        prompts: list[str],
        sampling: Sampling,
        adapter: str | None = None,
        on_done: Callable[[], None] | None = None,
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
