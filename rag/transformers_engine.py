"""Generation on transformers, for the architectures vLLM cannot serve (GPT-NeoX-Japanese, RWKV-4):
batched `model.generate` with PEFT LoRA adapters loaded and unloaded at run time. transformers' continuous
batching needs a model that takes its attention backends, which these are not (nor could vLLM's
transformers backend take them).

One worker thread owns the model. Requests wait in a queue; whenever the model is free, the worker takes
every request waiting and generates them in batches of one sampling setting each, adapters mixed through
PEFT's `adapter_names`. A stateful model (RWKV) reads no attention mask, so a left pad would enter its
state: it batches only prompts of one length. Adapter loads and unloads go through the same queue, between
batches: a request queued before an unload is answered with the adapter, one queued after it is not.

Each step of a batch passes through `_BatchFollower`, which streams every row's new text, cuts it at a stop
string, runs the loop guard, and stops the rows that are done while the others go on.
"""

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from kotae.core.config import Settings
from kotae.rag.engine_protocol import (
    Completion,
    Delta,
    EngineDead,
    OnDone,
    Sampling,
    UnknownAdapter,
    adapter_record,
)
from kotae.rag.loop_guard import LoopGuard
from kotae.rag.token_counter import TokenCounter

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 32
"""Requests one `generate` call takes when `Settings.max_num_seqs` is unset."""
BASE = "__base__"
"""PEFT's name for "no adapter" in `adapter_names`."""


@dataclass(slots=True)
class LoadedAdapter:
    name: str
    path: Path
    peft_name: str
    """The name PEFT holds its weights under: `name#n`, new on every load."""
    loaded_at: float = field(default_factory=time.time)


@dataclass(eq=False)
class _Request:
    prompt: str
    sampling: Sampling
    adapter: str | None
    streaming: bool
    """Deltas as they come, or only the finished `Completion`."""
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    """Deltas, then the final Delta (or an exception), filled from the worker thread."""
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    """The caller stopped reading: its row stops at the next step."""

    def send(self, event: Delta | BaseException) -> None:
        with suppress(RuntimeError):  # the caller's loop has closed: nobody is waiting
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass(eq=False)
class _Row:
    request: _Request
    prompt_tokens: int
    ids: list[int] = field(default_factory=list)
    guard: LoopGuard = field(default_factory=LoopGuard)
    first_token_s: float | None = None
    finish_reason: str | None = None


class _BatchFollower(BaseStreamer, StoppingCriteria):
    """Both the streamer and a stopping criterion of one `generate` call: `put` gets each step's new token
    of every row, and the criterion, called right after it, stops the rows that are done."""

    def __init__(self, rows: list[_Row], tokenizer: Any, eos: set[int]) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.eos = eos
        self._prompt_seen = False

    def put(self, value: "torch.Tensor") -> None:
        if not self._prompt_seen:  # generate hands the streamer the prompts first
            self._prompt_seen = True
            return
        for row, token in zip(self.rows, value.tolist(), strict=True):
            if row.finish_reason is None:
                self._step(row, token)

    def end(self) -> None:
        for row in self.rows:
            if row.finish_reason is None:  # generate ran out of steps
                self._finish(row, "length")

    def __call__(self, input_ids: "torch.Tensor", scores: "torch.Tensor", **kwargs: Any) -> "torch.Tensor":
        import torch

        done = [row.finish_reason is not None for row in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _step(self, row: _Row, token: int) -> None:
        request = row.request
        if request.cancelled:
            row.finish_reason = "abort"
            return
        if row.first_token_s is None:
            row.first_token_s = time.perf_counter() - request.submitted
        row.ids.append(token)
        if token in self.eos:
            self._finish(row, "stop")
            return
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        stops = [at for stop in request.sampling.stop if (at := text.find(stop)) >= 0]
        if stops:
            self._finish(row, "stop", text[: min(stops)])
        elif len(row.ids) >= request.sampling.max_tokens:
            self._finish(row, "length", text)
        else:
            # As vLLM streams: hold back what may be the start of a stop string or of a character whose
            # bytes are not all generated yet.
            hold = max((len(stop) - 1 for stop in request.sampling.stop), default=0)
            shown = text[: len(text) - hold].removesuffix("\ufffd")
            self._emit(row, shown)
            if row.guard.looping:
                self._finish(row, "repetition")

    def _emit(self, row: _Row, text: str) -> None:
        if (delta := row.guard.feed(text)) and row.request.streaming:
            row.request.send(Delta(delta))

    def _finish(self, row: _Row, reason: str, text: str | None = None) -> None:
        if text is None:
            text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        self._emit(row, text)
        row.finish_reason = "repetition" if row.guard.looping else reason
        completion = Completion(
            text=row.guard.text,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=len(row.ids),
            finish_reason=row.finish_reason,
            first_token_s=row.first_token_s,
        )
        row.request.send(Delta("", completion))


_STOP = object()
"""Tells the worker to end."""


class TransformersEngine:
    """The `Engine` of `kotae.rag.engine_protocol` on a transformers model in this process."""

    kind = "transformers"

    def __init__(
        self, model: Any, tokenizer: Any, model_name: str, settings: Settings, model_path: Path | None
    ) -> None:
        self._base = model
        self._model = model
        """The base model, or a `PeftModel` around it while adapters are loaded."""
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.model_path = model_path
        self.max_lora_rank = settings.max_lora_rank
        self.count_tokens = TokenCounter(tokenizer)
        self._batch = settings.max_num_seqs or DEFAULT_BATCH
        # A stateful model carries a recurrent state that a pad token would enter.
        self._pads = not getattr(model, "_is_stateful", False)
        eos = model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._adapters: dict[str, LoadedAdapter] = {}
        self._peft_ids = itertools.count(1)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="kotae-transformers", daemon=True)
        self._worker.start()

    @classmethod
    def start(cls, model: Path, settings: Settings) -> "TransformersEngine":
        """The model of folder `model`, served under the folder's name, as vLLM does."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        tokenizer.padding_side = "left"  # generation continues each row from its last prompt token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # The weights' own dtype on a GPU; fp32 on the CPU, where bf16 matmuls are slow on most machines.
        on_gpu = torch.cuda.is_available()
        loaded = AutoModelForCausalLM.from_pretrained(model, dtype="auto" if on_gpu else torch.float32)
        loaded.to("cuda" if on_gpu else "cpu").eval()
        return cls(loaded, tokenizer, model.name, settings, model)

    # -- generation -----------------------------------------------------------------------------

    async def stream(
        self, prompt: str, sampling: Sampling, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        """Stream an answer; the loop guard and the stop strings stop its row of the batch."""
        request = self._submit(prompt, sampling, adapter, streaming=True)
        try:
            while True:
                event = await request.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if event.completion is not None:
                    return
        finally:
            request.cancelled = True

    async def complete(self, prompt: str, sampling: Sampling, adapter: str | None = None) -> Completion:
        return await self._finished(self._submit(prompt, sampling, adapter, streaming=False))

    async def complete_many(
        self, prompts: list[str], sampling: Sampling, adapter: str | None = None, on_done: OnDone = None
    ) -> list[Completion]:
        """All prompts are queued at once, so the worker batches them; each comes back finished."""
        requests = [self._submit(prompt, sampling, adapter, streaming=False) for prompt in prompts]

        async def one(request: _Request) -> Completion:
            completion = await self._finished(request)
            if on_done:
                on_done()
            return completion

        try:
            return list(await asyncio.gather(*(one(request) for request in requests)))
        finally:
            for request in requests:
                request.cancelled = True

    def _submit(self, prompt: str, sampling: Sampling, adapter: str | None, streaming: bool) -> _Request:
        self._raise_if_dead()
        if adapter is not None and adapter not in self._adapters:
            raise UnknownAdapter(f"adapter {adapter!r} is not loaded")
        request = _Request(prompt, sampling, adapter, streaming, asyncio.get_running_loop(), asyncio.Queue())
        self._queue.put(request)
        return request

    @staticmethod
    async def _finished(request: _Request) -> Completion:
        try:
            event = await request.events.get()
        finally:
            request.cancelled = True
        if isinstance(event, BaseException):
            raise event
        assert event.completion is not None, "a request that does not stream gets only its completion"
        return event.completion

    # -- adapters -------------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, LoadedAdapter]:
        return dict(self._adapters)

    async def load_adapter(self, name: str, path: Path) -> LoadedAdapter:
        """Load (or reload) `name` from `path`; when this returns, requests naming it get these weights."""
        return await self._command(lambda: self._load(name, path))

    async def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise UnknownAdapter(f"adapter {name!r} is not loaded")
        await self._command(lambda: self._unload(name))

    async def _command(self, run: Callable[[], Any]) -> Any:
        """`run` in the worker, between two batches."""
        self._raise_if_dead()
        done: Future[Any] = Future()
        self._queue.put((run, done))
        return await asyncio.wrap_future(done)

    def _load(self, name: str, path: Path) -> LoadedAdapter:
        from peft import PeftModel

        peft_name = f"{name}#{next(self._peft_ids)}"
        # PEFT reads and checks the weights now: a bad adapter fails here, not on first use.
        if isinstance(self._model, PeftModel):
            self._model.load_adapter(str(path), adapter_name=peft_name)
        else:
            self._model = PeftModel.from_pretrained(self._base, str(path), adapter_name=peft_name)
        previous = self._adapters.get(name)
        self._adapters[name] = loaded = LoadedAdapter(name, path, peft_name)
        if previous:
            self._delete(previous.peft_name)
        return loaded

    def _unload(self, name: str) -> None:
        loaded = adapter_record(self._adapters, name, remove=True)
        if self._adapters:
            self._delete(loaded.peft_name)
        else:
            # PEFT cannot generate with no adapter left: take its LoRA layers out of the base.
            self._model = self._model.unload()

    def _delete(self, peft_name: str) -> None:
        # Another adapter is made PEFT's active one first, or PEFT warns that it had to pick one. Which is
        # active does not matter: every batch names its rows' adapters.
        self._model.set_adapter(next(iter(self._adapters.values())).peft_name)
        self._model.delete_adapter(peft_name)

    # -- the worker -----------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while (item := self._queue.get()) is not _STOP:
                waiting = [item]
                while isinstance(waiting[-1], _Request):
                    try:
                        waiting.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                requests = [r for r in waiting if isinstance(r, _Request) and not r.cancelled]
                for batch in self._batches(requests):
                    self._generate(batch)
                last = waiting[-1]
                if last is _STOP:
                    break
                if not isinstance(last, _Request):
                    self._run_command(*last)
        except BaseException:
            logger.exception("the transformers engine's worker failed")
        finally:
            self._closed = True
            self._fail_waiting()

    def _batches(self, requests: list[_Request]) -> list[list[_Request]]:
        """Requests that may share a `generate` call, in arrival order, at most `max_num_seqs` each."""
        groups: dict[tuple[Any, ...], list[_Request]] = {}
        for request in requests:
            sampling = request.sampling
            key: tuple[Any, ...] = (sampling.temperature, sampling.top_p, sampling.seed)
            if not self._pads:
                key += (len(self.tokenizer(request.prompt)["input_ids"]),)
            groups.setdefault(key, []).append(request)
        return [
            group[start : start + self._batch]
            for group in groups.values()
            for start in range(0, len(group), self._batch)
        ]

    def _generate(self, batch: list[_Request]) -> None:
        import torch
        from peft import PeftModel

        try:
            names = [self._adapters[r.adapter].peft_name if r.adapter else BASE for r in batch]
        except KeyError as missing:  # unloaded while the request waited
            for request in batch:
                request.send(UnknownAdapter(f"adapter {missing.args[0]!r} is not loaded"))
            return
        try:
            inputs = self.tokenizer([r.prompt for r in batch], return_tensors="pt", padding=True)
            inputs = inputs.to(self._base.device)
            rows = [_Row(r, int(n)) for r, n in zip(batch, inputs["attention_mask"].sum(dim=1), strict=True)]
            follower = _BatchFollower(rows, self.tokenizer, self._eos)
            sampling = batch[0].sampling
            sample = sampling.temperature > 0
            options: dict[str, Any] = (
                dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
                if sample
                else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
            )
            if isinstance(self._model, PeftModel):
                options["adapter_names"] = names
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                self._model.generate(
                    **inputs,
                    **options,
                    max_new_tokens=max(r.sampling.max_tokens for r in batch),
                    pad_token_id=self.tokenizer.pad_token_id,
                    streamer=follower,
                    stopping_criteria=StoppingCriteriaList([follower]),
                )
        except Exception as error:  # this batch fails; the engine goes on
            logger.exception("generation failed for a batch of %d", len(batch))
            for request in batch:
                request.send(error)

    def _run_command(self, run: Callable[[], Any], done: Future[Any]) -> None:
        try:
            done.set_result(run())
        except Exception as error:
            done.set_exception(error)

    def _fail_waiting(self) -> None:
        """Answer what is still queued once the worker has ended."""
        dead = EngineDead("the generation engine has stopped")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request):
                item.send(dead)
            elif item is not _STOP:
                item[1].set_exception(dead)

    # -- health ---------------------------------------------------------------------------------

    @property
    def errored(self) -> bool:
        return self._closed or not self._worker.is_alive()

    def _raise_if_dead(self) -> None:
        if self.errored:
            raise EngineDead("the generation engine has stopped")

    async def check_health(self) -> None:
        self._raise_if_dead()

    def shutdown(self) -> None:
        """Finish the batch in progress, fail what waits, and stop the worker."""
        self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout=60)
