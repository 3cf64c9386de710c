"""Generation on vLLM OpenAI servers given by URL (`Settings.replicas`): kotae retrieves and writes the
prompt, the replicas generate. Each replica is a `vllm serve` of the same base model — tensor-parallel
or not, kotae does not care — started with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`.

- A request goes to the healthy replica with the fewest requests in flight. A replica that fails it
  (refused connection, broken stream, a 5xx, silence past `replica_timeout_s`, an adapter it should
  have and has not) is marked unhealthy, and the request moves to another replica while none of it was
  streamed to the client. With no healthy replica left, requests fail at once (`EngineDead`: 503).
- Every `replica_health_interval_s` each replica's `/health` is probed. `PROBE_FAILURES` failed probes in a
  row take it out of rotation (one slow answer on a loaded host is no outage); a probe that times out while
  the replica streams an answer does not count (busy, not frozen). A failed replica rejoins at the first
  probe it passes, after the adapters it lacks (a restarted replica has none) are loaded into it.
- An adapter loads on every healthy replica or on none. Replicas serve it under its kotae name plus a
  digest of its files: new weights get a new name, so no replica cache keyed on the name (vLLM's prefix
  cache keys on name and path) can answer with the old weights, and a restarted kotae finds unchanged
  adapters already loaded. The old name is unloaded once its last request has finished.
- Adapter paths are sent as kotae sees them: the replicas must read the adapter root at that same path.
"""

import asyncio
import hashlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.rag.engine_protocol import (
    Completion,
    Delta,
    EngineDead,
    OnDone,
    Sampling,
    adapter_record,
    complete_each,
)
from kotae.rag.loop_guard import LoopGuard
from kotae.rag.token_counter import TokenCounter

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
"""A health probe or a model listing slower than this counts as a failure."""
PROBE_FAILURES = 2
"""Failed health probes in a row that take a replica out of rotation."""
CONNECT_TIMEOUT_S = 5.0
"""A replica that does not accept a connection this fast is down: the request moves on."""
START_POLL_S = 2.0


class ReplicaFailed(KotaeError):
    """A replica could not serve a request (another may); raised to the caller once part of an answer
    was already streamed from it."""


class AdapterRefused(KotaeError):
    """A replica answered an adapter load with an error."""


@dataclass(eq=False)
class Replica:
    url: str
    healthy: bool = False
    in_flight: int = 0
    last_turn: int = 0
    """When it was last picked: among equally busy replicas the one idle longest goes next, so
    one-at-a-time traffic takes turns."""
    last_streamed: float = 0.0
    """`time.monotonic()` when it last streamed a chunk of an answer."""
    failed_probes: int = 0
    """Health probes failed in a row."""


@dataclass(slots=True)
class ReplicaAdapter:
    name: str
    path: Path
    served_name: str
    """The model name the replicas serve these weights under: `name@digest`."""
    loaded_at: float = field(default_factory=time.time)


def adapter_digest(path: Path) -> str:
    """Hash of the adapter folder's files (names and contents, not sub-folders)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:12]


def served_models(listing: dict[str, Any]) -> tuple[str | None, set[str]]:
    """The base model's and the adapters' names in a replica's `/v1/models`."""
    cards = listing.get("data") or []
    base = next((card["id"] for card in cards if not card.get("parent")), None)
    return base, {card["id"] for card in cards if card.get("parent")}


def wait_for_replicas(replicas: list[Replica], timeout_s: float) -> str:
    """Block until at least one replica lists its models; mark those that did healthy, and return the
    base model's name, which they must agree on. The others join later, through the health monitor."""
    deadline = time.monotonic() + timeout_s
    bases: dict[str, str] = {}
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as http:
        while True:
            for replica in replicas:
                try:
                    response = http.get(f"{replica.url}/v1/models")
                    response.raise_for_status()
                    base, _ = served_models(response.json())
                except (httpx.HTTPError, ValueError):
                    continue
                if base is not None:
                    bases[replica.url] = base
                    replica.healthy = True
            if bases:
                break
            if time.monotonic() > deadline:
                raise KotaeError(
                    f"no replica answered within {timeout_s:g} s: {', '.join(r.url for r in replicas)}"
                )
            time.sleep(START_POLL_S)
    if len(set(bases.values())) > 1:
        served = ", ".join(f"{url} serves {base!r}" for url, base in bases.items())
        raise KotaeError(f"replicas must serve one base model: {served}")
    return next(iter(bases.values()))


class RemoteEngine:
    """The `Engine` of `kotae.rag.engine_protocol` on vLLM OpenAI servers."""

    kind = "vllm-replicas"

    def __init__(
        self, replicas: list[Replica], model_name: str, model_path: Path, settings: Settings
    ) -> None:
        from transformers import AutoTokenizer

        self.model_name = model_name
        self.model_path: Path | None = model_path
        self.max_lora_rank = settings.max_lora_rank
        """The replicas' `--max-lora-rank` must be at least this: vLLM does not report its own."""
        self.replicas = replicas
        self.count_tokens = TokenCounter(AutoTokenizer.from_pretrained(model_path))
        self._timeout = httpx.Timeout(settings.replica_timeout_s, connect=CONNECT_TIMEOUT_S)
        self._health_interval_s = settings.replica_health_interval_s
        self._adapters: dict[str, ReplicaAdapter] = {}
        self._in_flight: Counter[str] = Counter()
        """Requests per adapter served name: a replaced name is unloaded when its count drops to 0."""
        self._adapter_lock = asyncio.Lock()
        self._turns = itertools.count(1)
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def start(cls, model: Path, settings: Settings) -> "RemoteEngine":
        """`model` is the generator's local folder: its tokenizer counts prompt tokens here."""
        replicas = [Replica(url) for url in settings.replicas]
        model_name = wait_for_replicas(replicas, settings.replica_start_timeout_s)
        logger.info(
            "generation on replicas serving %r: %s (healthy now: %s)",
            model_name,
            ", ".join(r.url for r in replicas),
            ", ".join(r.url for r in replicas if r.healthy),
        )
        return cls(replicas, model_name, model, settings)

    # -- generation -----------------------------------------------------------------------------

    async def stream(
        self, prompt: str, sampling: Sampling, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        """Stream an answer; a replica that fails before the first delta is replaced by another."""
        with self._serving(adapter) as model:
            for replica in self._candidates():
                streamed = False
                try:
                    async with aclosing(self._generate(replica, prompt, sampling, model)) as deltas:
                        async for delta in deltas:
                            streamed = True
                            yield delta
                    return
                except ReplicaFailed as failure:
                    self._mark_failed(replica, str(failure))
                    if streamed:
                        raise
            raise EngineDead("no generation replica is healthy")

    async def complete(self, prompt: str, sampling: Sampling, adapter: str | None = None) -> Completion:
        """A failed replica's partial answer is dropped and the whole answer asked of another: nothing
        reached the client yet."""
        with self._serving(adapter) as model:
            for replica in self._candidates():
                try:
                    # Closed at once, not when collected: the connection and the in-flight count go with it.
                    async with aclosing(self._generate(replica, prompt, sampling, model)) as deltas:
                        async for delta in deltas:
                            if delta.completion is not None:
                                return delta.completion
                except ReplicaFailed as failure:
                    self._mark_failed(replica, str(failure))
            raise EngineDead("no generation replica is healthy")

    async def complete_many(
        self, prompts: list[str], sampling: Sampling, adapter: str | None = None, on_done: OnDone = None
    ) -> list[Completion]:
        """All prompts at once: they spread over the replicas, and each replica batches its share."""
        return await complete_each(lambda prompt: self.complete(prompt, sampling, adapter), prompts, on_done)

    def _candidates(self) -> Iterator[Replica]:
        """Healthy replicas not tried yet, the least busy first (health is read again at each step)."""
        tried: set[int] = set()
        while healthy := [r for r in self.replicas if r.healthy and id(r) not in tried]:
            replica = min(healthy, key=lambda r: (r.in_flight, r.last_turn))
            replica.last_turn = next(self._turns)
            tried.add(id(replica))
            yield replica

    async def _generate(
        self, replica: Replica, prompt: str, sampling: Sampling, model: str
    ) -> AsyncGenerator[Delta, None]:
        """One attempt on one replica: vLLM's streamed completion through kotae's loop guard."""
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(sampling.stop),
            "stream": True,
            # Token ids per chunk: exact token counts even when the loop guard cuts the stream short.
            "return_token_ids": True,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        started = time.perf_counter()
        first_token_s: float | None = None
        prompt_tokens = completion_tokens = 0
        raw = ""
        guard = LoopGuard()
        replica.in_flight += 1
        try:
            async with self._session().stream("POST", f"{replica.url}/v1/completions", json=body) as response:
                if response.status_code != HTTPStatus.OK:
                    await response.aread()
                    raise self._refusal(replica, response, model)
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line.removeprefix("data: "))
                    replica.last_streamed = time.monotonic()
                    if "error" in chunk:
                        raise ReplicaFailed(f"{replica.url} failed mid-answer: {chunk['error']}")
                    if not chunk.get("choices"):
                        continue
                    choice = chunk["choices"][0]
                    prompt_tokens += len(choice.get("prompt_token_ids") or ())
                    completion_tokens += len(choice.get("token_ids") or ())
                    if first_token_s is None and completion_tokens:
                        first_token_s = time.perf_counter() - started
                    raw += choice.get("text") or ""
                    if text := guard.feed(raw):
                        yield Delta(text)
                    finish = choice.get("finish_reason")
                    if guard.looping or finish:
                        # Leaving the block closes the connection: vLLM aborts a request cut short.
                        completion = Completion(
                            text=guard.text,
                            prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens,
                            finish_reason="repetition" if guard.looping else finish,
                            first_token_s=first_token_s,
                        )
                        yield Delta("", completion)
                        return
            raise ReplicaFailed(f"{replica.url} ended the answer without a finish reason")
        except httpx.TransportError as error:
            raise ReplicaFailed(f"{replica.url}: {type(error).__name__}: {error}") from error
        except json.JSONDecodeError as error:
            raise ReplicaFailed(f"{replica.url} streamed a malformed chunk: {error}") from error
        finally:
            replica.in_flight -= 1

    def _refusal(self, replica: Replica, response: httpx.Response, model: str) -> KotaeError:
        """An error answer: the replica's fault (5xx, or an adapter it lacks) or the request's."""
        message = _error_message(response)
        if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
            return ReplicaFailed(f"{replica.url} answered {response.status_code}: {message}")
        if response.status_code == HTTPStatus.NOT_FOUND:
            # Out of step with kotae's adapter table (restarted?): the health monitor loads it back.
            return ReplicaFailed(f"{replica.url} does not serve model {model!r}: {message}")
        return KotaeError(f"{replica.url} refused the request ({response.status_code}): {message}")

    # -- adapters -------------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, ReplicaAdapter]:
        return dict(self._adapters)

    async def load_adapter(self, name: str, path: Path) -> ReplicaAdapter:
        """Load (or replace) `name` on every healthy replica, or fail leaving none of them changed."""
        served_name = f"{name}@{await asyncio.to_thread(adapter_digest, path)}"
        async with self._adapter_lock:
            previous = self._adapters.get(name)
            if previous is None or previous.served_name != served_name:
                await self._load_everywhere(served_name, path)
            self._adapters[name] = ReplicaAdapter(name, path, served_name)
            if previous is not None and previous.served_name != served_name:
                await self._unload_if_unused(previous.served_name)
            return self._adapters[name]

    async def unload_adapter(self, name: str) -> None:
        async with self._adapter_lock:
            loaded = adapter_record(self._adapters, name, remove=True)
            await self._unload_if_unused(loaded.served_name)

    @contextmanager
    def _serving(self, adapter: str | None) -> Iterator[str]:
        """The model name to ask the replicas for, counted in flight while the request runs."""
        self._raise_if_closed()
        if adapter is None:
            yield self.model_name
            return
        served_name = adapter_record(self._adapters, adapter).served_name
        self._in_flight[served_name] += 1
        try:
            yield served_name
        finally:
            self._in_flight[served_name] -= 1
            if not self._in_flight[served_name]:
                del self._in_flight[served_name]
                if not self._is_current(served_name):
                    self._in_background(self._unload_retired(served_name))

    def _is_current(self, served_name: str) -> bool:
        return any(loaded.served_name == served_name for loaded in self._adapters.values())

    async def _unload_retired(self, served_name: str) -> None:
        async with self._adapter_lock:
            await self._unload_if_unused(served_name)

    async def _unload_if_unused(self, served_name: str) -> None:
        """Unload a served name no adapter maps to any more, unless requests still run on it (the last
        one to finish unloads it). Callers hold the adapter lock."""
        if self._is_current(served_name) or self._in_flight[served_name]:
            return
        await asyncio.gather(*(self._unload_on(r, served_name) for r in self.replicas if r.healthy))

    async def _load_everywhere(self, served_name: str, path: Path) -> None:
        targets = [r for r in self.replicas if r.healthy]
        if not targets:
            raise EngineDead("no generation replica is healthy")
        results = await asyncio.gather(
            *(self._load_on(r, served_name, path) for r in targets), return_exceptions=True
        )
        refusals: list[str] = []
        newly_loaded: list[Replica] = []
        for replica, result in zip(targets, results, strict=True):
            if result is True:
                newly_loaded.append(replica)
            elif isinstance(result, ReplicaFailed):
                # Down, not refusing: it gets the adapter when it rejoins.
                self._mark_failed(replica, str(result))
            elif isinstance(result, BaseException):
                refusals.append(str(result))
        if refusals or not any(r.healthy for r in targets):
            await asyncio.gather(*(self._unload_on(r, served_name) for r in newly_loaded))
            if refusals:
                raise AdapterRefused("; ".join(refusals))
            raise EngineDead("no generation replica is healthy")

    async def _load_on(self, replica: Replica, served_name: str, path: Path) -> bool:
        """True when this call loaded it, False when the replica already served it."""
        body = {"lora_name": served_name, "lora_path": str(path)}
        try:
            response = await self._session().post(f"{replica.url}/v1/load_lora_adapter", json=body)
            if response.status_code == HTTPStatus.OK:
                return True
            if response.status_code == HTTPStatus.BAD_REQUEST and served_name in await self._adapters_on(
                replica
            ):
                return False  # same name, same files: loaded by an earlier kotae, or before a failure
        except httpx.TransportError as error:
            raise ReplicaFailed(f"{replica.url}: {type(error).__name__}: {error}") from error
        if response.status_code == HTTPStatus.NOT_FOUND and _error_message(response) == "Not Found":
            raise AdapterRefused(
                f"{replica.url} has no /v1/load_lora_adapter: start it with --enable-lora and "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
            )
        raise AdapterRefused(
            f"{replica.url} refused adapter {served_name!r} from {path} ({response.status_code}): "
            f"{_error_message(response)} (replicas must read adapters at kotae's path)"
        )

    async def _unload_on(self, replica: Replica, served_name: str) -> None:
        """Best effort: kotae no longer routes to the name; a replica that missed this keeps it idle."""
        try:
            response = await self._session().post(
                f"{replica.url}/v1/unload_lora_adapter", json={"lora_name": served_name}
            )
        except httpx.TransportError as error:
            logger.warning("adapter %r not unloaded from %s: %s", served_name, replica.url, error)
            return
        if response.status_code not in (HTTPStatus.OK, HTTPStatus.NOT_FOUND):
            logger.warning(
                "adapter %r not unloaded from %s: %s", served_name, replica.url, _error_message(response)
            )

    async def _adapters_on(self, replica: Replica) -> set[str]:
        response = await self._session().get(f"{replica.url}/v1/models", timeout=PROBE_TIMEOUT_S)
        response.raise_for_status()
        return served_models(response.json())[1]

    # -- health ---------------------------------------------------------------------------------

    @property
    def errored(self) -> bool:
        return self._closed or not any(r.healthy for r in self.replicas)

    async def check_health(self) -> None:
        """Probe every replica now; fine while one is healthy."""
        await self._probe_all()
        if self.errored:
            raise EngineDead("no generation replica is healthy")

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise EngineDead("the generation engine has stopped")

    def _mark_failed(self, replica: Replica, reason: str) -> None:
        if replica.healthy:
            logger.warning("replica %s marked unhealthy: %s", replica.url, reason)
        replica.healthy = False

    async def _monitor(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._health_interval_s)
            await self._probe_all()

    async def _probe_all(self) -> None:
        await asyncio.gather(*(self._probe(r) for r in self.replicas))

    async def _probe(self, replica: Replica) -> None:
        began = time.monotonic()
        try:
            response = await self._session().get(f"{replica.url}/health", timeout=PROBE_TIMEOUT_S)
            alive = response.status_code == HTTPStatus.OK
            failure = f"/health answered {response.status_code}"
        except httpx.TimeoutException as error:
            # Too slow to answer /health, yet streaming answers meanwhile: busy, not frozen.
            alive, failure = replica.last_streamed >= began, f"/health: {type(error).__name__}"
        except httpx.TransportError as error:
            alive, failure = False, f"/health: {type(error).__name__}"
        replica.failed_probes = 0 if alive else replica.failed_probes + 1
        if replica.failed_probes >= PROBE_FAILURES:
            self._mark_failed(replica, f"{failure} ({replica.failed_probes} probes in a row)")
        elif alive and not replica.healthy:
            await self._rejoin(replica)

    async def _rejoin(self, replica: Replica) -> None:
        """Back in rotation once it serves the base model and every current adapter."""
        async with self._adapter_lock:
            if replica.healthy:
                return
            try:
                response = await self._session().get(f"{replica.url}/v1/models", timeout=PROBE_TIMEOUT_S)
                response.raise_for_status()
                base, present = served_models(response.json())
                if base != self.model_name:
                    raise AdapterRefused(f"{replica.url} serves {base!r}, not {self.model_name!r}")
                for loaded in self._adapters.values():
                    if loaded.served_name not in present:
                        await self._load_on(replica, loaded.served_name, loaded.path)
            except (httpx.HTTPError, ValueError, KotaeError) as error:
                logger.warning("replica %s stays out of rotation: %s", replica.url, error)
                return
            replica.healthy = True
            logger.info("replica %s is back in rotation", replica.url)

    # -- event loop -----------------------------------------------------------------------------

    def _session(self) -> httpx.AsyncClient:
        """The HTTP client of the running event loop, with the health monitor running beside it (a
        client's connections belong to one loop; `kotae ask` and evals may run more than one)."""
        self._raise_if_closed()
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            # No cap on connections: every streamed answer holds one, and vLLM batches them all.
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
            self._http = httpx.AsyncClient(timeout=self._timeout, limits=limits)
            self._loop = loop
            self._in_background(self._monitor())
        return self._http

    def _in_background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def shutdown(self) -> None:
        """Stop routing and probing; the replicas keep running (they are not kotae's to stop)."""
        self._closed = True
        for task in self._background:
            task.cancel()
        self._http = None


def _error_message(response: httpx.Response) -> str:
    """vLLM's `{"error": {"message"}}`, FastAPI's `{"detail"}`, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if "detail" in body:
            return str(body["detail"])
    return response.text[:200]
