"""Generation on any OpenAI-compatible endpoint (`vllm serve`, a hosted model), for `kotae eval
--target openai:URL`: kotae retrieves and writes the prompt here, the endpoint only completes it.

- `completions` (the default) sends kotae's prompt as it is to `POST {url}/v1/completions`, so the
  endpoint's model reads the very bytes kotae's own model reads; use it whenever the endpoint has it.
- `chat` sends the same prompt as the one user message of `POST {url}/v1/chat/completions`, for
  endpoints that only chat: the endpoint wraps it in its model's chat template.

The API key comes from the `OPENAI_API_KEY` environment variable (none is sent when it is unset). Prompt
tokens are counted, for the passages' budget, with kotae's generator tokenizer: the prompts are those
kotae's own model gets; the endpoint reports its own token usage.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

from kotae.core.errors import KotaeError
from kotae.rag.engine_protocol import (
    Completion,
    Delta,
    LoadedAdapterInfo,
    OnDone,
    Sampling,
    UnknownAdapter,
    complete_each,
)
from kotae.rag.token_counter import TokenCounter

OpenAIApi = Literal["completions", "chat"]
API_KEY_VARIABLE = "OPENAI_API_KEY"
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 600.0
"""Per request: a busy endpoint may queue it behind the rest of the run."""


def base_url(url: str) -> str:
    """The endpoint's root, whether it was given with or without OpenAI's `/v1` suffix."""
    if not url.startswith(("http://", "https://")):
        raise KotaeError(f"--target openai:URL needs an http(s):// URL, not {url!r}")
    return url.rstrip("/").removesuffix("/v1")


def _auth_headers() -> dict[str, str]:
    key = os.environ.get(API_KEY_VARIABLE)
    return {"Authorization": f"Bearer {key}"} if key else {}


async def check_endpoint(url: str, model: str) -> str | None:
    """Fails clearly when the endpoint cannot be reached, refuses the key, or lists its models without
    `model`; the model `model` is an adapter of, when the listing says so (vLLM's `parent`)."""
    url = base_url(url)
    try:
        async with httpx.AsyncClient(headers=_auth_headers(), timeout=CONNECT_TIMEOUT_S) as http:
            response = await http.get(f"{url}/v1/models")
    except httpx.HTTPError as error:
        raise KotaeError(f"cannot reach the endpoint {url}: {type(error).__name__}: {error}") from error
    if response.status_code in (401, 403):
        raise KotaeError(f"{url} refused the API key (set it in ${API_KEY_VARIABLE})")
    if response.status_code != 200:
        raise KotaeError(f"{url}/v1/models answered {response.status_code}: is it an OpenAI API?")
    try:
        served = {card["id"]: card.get("parent") for card in response.json().get("data") or []}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise KotaeError(f"{url}/v1/models is not an OpenAI model listing") from error
    if served and model not in served:
        raise KotaeError(f"{url} serves {', '.join(sorted(served))}; not --model {model!r}")
    parent = served.get(model)
    return parent if isinstance(parent, str) else None


class OpenAIEngine:
    """The `Engine` of `kotae.rag.engine_protocol` on an OpenAI-compatible endpoint, without adapters."""

    kind = "openai"
    max_lora_rank = 0

    def __init__(
        self, url: str, model: str, count_tokens: TokenCounter, api: OpenAIApi, concurrency: int
    ) -> None:
        self.url = base_url(url)
        self.model_name = model
        self.model_path: Path | None = None
        self.count_tokens = count_tokens
        self.api = api
        self._gate = asyncio.Semaphore(concurrency)
        self._headers = _auth_headers()
        self._timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)

    async def check_health(self) -> None:
        await check_endpoint(self.url, self.model_name)

    async def parent_model(self) -> str | None:
        """The base model when the endpoint serves `model_name` as an adapter of it."""
        return await check_endpoint(self.url, self.model_name)

    async def complete(self, prompt: str, sampling: Sampling, adapter: str | None = None) -> Completion:
        if adapter:
            raise UnknownAdapter(f"an OpenAI endpoint serves no kotae adapter ({adapter!r})")
        body: dict[str, Any] = {
            "model": self.model_name,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(sampling.stop),
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        path = "/v1/chat/completions" if self.api == "chat" else "/v1/completions"
        async with self._gate:
            try:
                async with httpx.AsyncClient(headers=self._headers, timeout=self._timeout) as http:
                    response = await http.post(f"{self.url}{path}", json=body)
            except httpx.HTTPError as error:
                raise KotaeError(f"{self.url}{path}: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise KotaeError(f"{self.url}{path} answered {response.status_code}: {response.text[:300]}")
        return self._completion(response.json())

    def _completion(self, reply: dict[str, Any]) -> Completion:
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
            usage = reply.get("usage") or {}
            return Completion(
                text=text or "",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=choice.get("finish_reason") or "stop",
                first_token_s=None,
            )
        except (KeyError, IndexError, TypeError) as error:
            raise KotaeError(f"{self.url} answered outside OpenAI's {self.api} schema: {error!r}") from error

    async def complete_many(
        self, prompts: list[str], sampling: Sampling, adapter: str | None = None, on_done: OnDone = None
    ) -> list[Completion]:
        """All prompts at once, at most `concurrency` requests in flight."""
        return await complete_each(lambda prompt: self.complete(prompt, sampling, adapter), prompts, on_done)

    async def stream(
        self, prompt: str, sampling: Sampling, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        """The whole answer as one delta (evals do not stream)."""
        completion = await self.complete(prompt, sampling, adapter)
        yield Delta(completion.text, completion)

    @property
    def adapters(self) -> Mapping[str, LoadedAdapterInfo]:
        return {}

    async def load_adapter(self, name: str, path: Path) -> LoadedAdapterInfo:
        raise KotaeError("an OpenAI endpoint loads no kotae adapter: score its model with --adapter ''")

    async def unload_adapter(self, name: str) -> None:
        raise UnknownAdapter(f"adapter {name!r} is not loaded")

    @property
    def errored(self) -> bool:
        return False

    def shutdown(self) -> None:
        """Nothing to stop: the endpoint runs on its own."""
