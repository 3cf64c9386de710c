"""Generation on vLLM: one async engine that batches every concurrent request, with LoRA adapters
loaded and unloaded at run time.

The server streams from it, evals submit all questions at once to it, and nothing holds a lock around
generation: batching is vLLM's job.
"""

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.rag.engine_process import launch_engine_cores_from_fork_server
from kotae.rag.engine_protocol import Completion, Delta, EngineDead, OnDone, Sampling, adapter_record
from kotae.rag.gpu_memory import plan_gpu_memory
from kotae.rag.loop_guard import ENGINE_LOOP_COPIES, ENGINE_LOOP_MAX_PATTERN, LoopGuard
from kotae.rag.scheduler_limits import SchedulerLimits, Workload, scheduler_limits
from kotae.rag.stop_tokens import StopTokens
from kotae.rag.token_counter import TokenCounter

if TYPE_CHECKING:
    from vllm import RequestOutput, SamplingParams
    from vllm.config import VllmConfig
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger(__name__)

SHUTDOWN_CLOSE_S = 5.0
"""How long `VLLMEngine.shutdown` lets an idle event loop run vLLM's socket close and handler exit."""


@dataclass(slots=True)
class LoadedAdapter:
    name: str
    path: Path
    request: "LoRARequest"
    loaded_at: float = field(default_factory=time.time)


def _sampling_params(
    sampling: Sampling,
    output_kind: "RequestOutputKind",
    stop_tokens: StopTokens | None,
    ends_loops: bool,
) -> "SamplingParams":
    """vLLM's parameters for `sampling`, with `stop_tokens` beside its stop strings where they serve them,
    and, with `ends_loops`, the engine core's repetition detection set as the loop guard needs it.

    vLLM gives each request a copy of its parameters, a deep one unless `skip_clone` (80 µs each, on the
    event loop that carries every output). Shallow copies are enough here, as in vLLM's own server: what the
    copies share (the stop lists and sets) vLLM only extends with the engine's own end-of-text tokens, the
    same for every request of a call, and a call's parameters serve one engine."""
    from vllm import SamplingParams
    from vllm.sampling_params import RepetitionDetectionParams

    loops = (
        RepetitionDetectionParams(max_pattern_size=ENGINE_LOOP_MAX_PATTERN, min_count=ENGINE_LOOP_COPIES)
        if ends_loops
        else None
    )
    return SamplingParams(
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        stop=list(sampling.stop),
        stop_token_ids=list(stop_tokens.texts) if stop_tokens and stop_tokens.serve(sampling.stop) else None,
        seed=sampling.seed,
        output_kind=output_kind,
        repetition_detection=loops,
        skip_clone=True,
    )


def _answer_text(output: "RequestOutput", sampling: Sampling, stop_tokens: StopTokens | None) -> str:
    """The text of `output`'s answer as the stop strings alone would have ended it."""
    choice = output.outputs[0]
    if stop_tokens is None or not output.finished:
        return choice.text
    return stop_tokens.text(choice.text, choice.stop_reason, sampling.stop)


def _finished_completion(output: "RequestOutput", text: str) -> Completion:
    """A finished output with its answer `text` through the loop guard: cut where `stream` would have
    stopped it."""
    choice = output.outputs[0]
    guard = LoopGuard()
    guard.feed(text)
    return Completion(
        text=guard.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(choice.token_ids),
        finish_reason="repetition" if guard.looping else (choice.finish_reason or "stop"),
        # vLLM's own first-token latency, when it keeps request stats (kotae starts it with stats on).
        first_token_s=getattr(output.metrics, "first_token_latency", None) or None,
    )


LORA_KERNEL_CONFIGS = Path(__file__).parent / "lora_kernel_configs"
"""vLLM's LoRA kernel configurations for the GPUs kotae has measured (its `VLLM_TUNED_CONFIG_FOLDER`)."""

_cache_dirs_set: set[str] = set()
"""The cache folders this process set itself: a later engine of another `home` moves them; a user's stay."""


def _read_tokenizer(path: str) -> tuple[Any, StopTokens]:
    """kotae's own instance of the engine's tokenizer, and the answer stops' tokens read from it.

    vLLM routes the calls of the tokenizer it hands out through a pool of deep copies, one per renderer
    thread; a call that finds every copy borrowed deep-copies the whole tokenizer, holding the GIL for
    seconds with Gemma 3's vocabulary. kotae counts and encodes from threads of its own, so it keeps its
    own."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    return tokenizer, StopTokens.of(tokenizer)


def vllm_cache_root(settings: Settings) -> Path:
    """Where vLLM keeps what it compiles (torch.compile graphs, Inductor and Triton kernels, keyed by model
    and config): under kotae's home, so that the next start on this machine reuses it."""
    return settings.home / "cache" / "vllm"


def triton_cache_dir(settings: Settings) -> Path:
    """Where Triton keeps the GPU kernels it compiles (vLLM's LoRA kernels, Inductor's, the embedder's),
    under kotae's home beside vLLM's cache: left to Triton, they go to `~/.triton`, lost with a container's
    file system where kotae's home is a volume."""
    return settings.home / "cache" / "triton"


def _set_cache_dir(name: str, folder: Path) -> None:
    """Sets the environment variable `name` to `folder`, unless a user set it."""
    current = os.environ.get(name)
    if current is None or current in _cache_dirs_set:
        os.environ[name] = str(folder)
        _cache_dirs_set.add(str(folder))


def configure_vllm_environment(settings: Settings) -> None:
    """vLLM reads these at import time or engine start; explicit user settings win.

    On CPU, the default thread binding leaves a core idle (the KV cache is an engine argument:
    `cpu_engine_args`).
    Everywhere, vLLM's own processes are spawned rather than forked: a fork inherits modules such as
    numba (the BM25 search kernel) that crash vLLM's start-up in the child. (The engine core itself is
    forked from a clean fork server: `kotae.rag.engine_process`.) On a GPU, vLLM's LoRA kernels take
    kotae's configurations for the cards it has measured (`LORA_KERNEL_CONFIGS`). What vLLM and Triton
    compile is kept under kotae's home.
    """
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    os.environ.setdefault("VLLM_TUNED_CONFIG_FOLDER", str(LORA_KERNEL_CONFIGS))
    cores = os.sched_getaffinity(0)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{min(cores)}-{max(cores)}")
    _set_cache_dir("VLLM_CACHE_ROOT", vllm_cache_root(settings))
    _set_cache_dir("TRITON_CACHE_DIR", triton_cache_dir(settings))


def unserved_architecture(model: Path, settings: Settings) -> str | None:
    """The first of `model`'s architectures vLLM does not serve, or None when it serves them all, natively
    or through its transformers backend (a transformers class that takes attention backends)."""
    configure_vllm_environment(settings)
    import transformers
    from vllm import ModelRegistry

    known = set(ModelRegistry.get_supported_archs())
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    for architecture in config.get("architectures") or []:
        model_class = getattr(transformers, architecture, None)
        if architecture not in known and not getattr(model_class, "_supports_attention_backend", False):
            return architecture
    return None


CPU_4BIT_KERNEL = "cpu_gemm_wna16"
"""vLLM's CPU kernel for 4-bit weights with 16-bit activations (compressed-tensors W4A16, GPTQ or AWQ)."""


def cpu_has_4bit_kernel() -> bool:
    """Whether vLLM's kernels for this CPU have `CPU_4BIT_KERNEL` (its AVX2 build has not)."""
    import torch
    from vllm.platforms import current_platform

    current_platform.import_kernels()  # the build for this CPU's instruction set, as vLLM's worker loads it
    return hasattr(torch.ops._C, CPU_4BIT_KERNEL)


def refuse_4bit_without_cpu_kernel(model: Path) -> None:
    """A `kotae quantize` output on a CPU without `CPU_4BIT_KERNEL` would start, then stop the engine at its
    first request: refuse it before the start instead."""
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    if (config.get("quantization_config") or {}).get("quant_method") != "compressed-tensors":
        return
    if not cpu_has_4bit_kernel():
        raise KotaeError(
            f"{model} holds 4-bit weights, and vLLM's kernels for this CPU have no {CPU_4BIT_KERNEL} "
            "(its AVX2 build lacks it): serve the 16-bit model on this machine, or this one on a GPU or an "
            "AVX-512 CPU"
        )


def cpu_engine_args(settings: Settings, limits: SchedulerLimits) -> dict[str, object]:
    """Engine arguments for a CPU: the KV cache of `kv_cache_gib`, which vLLM allocates and fills at start,
    and the workload's prefix cache (`SchedulerLimits.prefix_caching`). Unset, vLLM would ask for most of the
    machine's memory. As an engine argument it
    may be a fraction of a GiB, and each engine of a process gets its own (vLLM's `VLLM_CPU_KVCACHE_SPACE`
    takes whole GiB, is read from the environment, and still overrides it where a user sets it)."""
    return {
        "kv_cache_memory_bytes": int(settings.kv_cache_gib * 2**30),
        "enable_prefix_caching": limits.prefix_caching,
    }


def gpu_engine_args(
    model: Path, settings: Settings, limits: SchedulerLimits, device_bytes: int
) -> dict[str, object]:
    """Engine arguments for a GPU: its memory, the CUDA graphs captured at start and the workload's prefix
    cache (`SchedulerLimits.prefix_caching`).

    The graphs are captured once for batches with a LoRA and not again for those without (vLLM's default
    captures both): kotae answers with an adapter, and a base-model step in a LoRA graph only multiplies
    by empty adapter slots."""
    common = {
        "cudagraph_capture_sizes": limits.cuda_graph_sizes,
        "compilation_config": {"cudagraph_specialize_lora": False},
        "enable_prefix_caching": limits.prefix_caching,
    }
    if settings.gpu_memory_utilization is not None:
        logger.info(
            "GPU memory: %.0f%% of the card (KOTAE_GPU_MEMORY_UTILIZATION)",
            settings.gpu_memory_utilization * 100,
        )
        return {"gpu_memory_utilization": settings.gpu_memory_utilization, **common}
    assert limits.max_num_seqs is not None  # always set on a GPU
    plan = plan_gpu_memory(model, settings, limits.max_num_seqs)
    logger.info(plan.describe())
    # The share only sets how much free memory vLLM's start asks for; the KV cache is the plan's.
    share = plan.share_of(device_bytes)
    return {"kv_cache_memory_bytes": plan.kv_cache_bytes, "gpu_memory_utilization": share, **common}


def profiler_args(profile_dir: Path | None) -> dict[str, object]:
    """vLLM's torch profiler writing the engine core's trace into `profile_dir` (none without it). Stack
    traces are left out: they would multiply the trace's size and the profiled run's time. So is vLLM's
    profiler of this process (its front end): it records every CPU op of kotae's own threads, and, started
    and stopped from worker threads, it took the whole process down in some test runs."""
    if profile_dir is None:
        return {}
    config = {
        "profiler": "torch",
        "torch_profiler_dir": str(profile_dir.resolve()),
        "torch_profiler_with_stack": False,
        "ignore_frontend": True,
    }
    return {"profiler_config": config}


def supported_args(engine_args: type, wanted: dict[str, object]) -> dict[str, object]:
    """The arguments this vLLM's `engine_args` takes; the others are logged and left out, so that an older
    vLLM still starts (with its own default for them)."""
    names = {field.name for field in dataclasses.fields(engine_args)}
    for name in sorted(set(wanted) - names):
        logger.warning("this vLLM has no engine argument %r: left at its default", name)
    return {name: value for name, value in wanted.items() if name in names and value is not None}


@dataclass(frozen=True, slots=True)
class VLLMLaunch:
    """A vLLM engine configured (`VLLMEngine.configure`) and not yet launched. The configuration takes the
    interpreter (vLLM's imports); the launch mostly waits for the engine core's process, so another thread
    of this one (the collections opening, `kotae.runtime.build_pipeline`) runs meanwhile."""

    config: "VllmConfig"
    model_name: str
    max_lora_rank: int
    model_path: Path
    tokenizer: "Future[tuple[Any, StopTokens]]"
    """kotae's own tokenizer and the answer stops' tokens (`kotae.rag.stop_tokens`, read from the whole
    vocabulary), read in a thread of their own while the engine launches."""

    def launch(self) -> "VLLMEngine":
        """Start the engine core and wait until it is ready."""
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        llm = AsyncLLM.from_vllm_config(
            self.config, usage_context=UsageContext.OPENAI_API_SERVER, disable_log_stats=False
        )
        try:
            tokenizer, stop_tokens = self.tokenizer.result()  # read by now: the engine core took longer
        except Exception as error:  # vLLM's tokenizer serves, and answers stop on their stop strings
            logger.warning(
                "kotae encodes with vLLM's tokenizer and answers stop on stop strings alone: the "
                "tokenizer could not be read (%s)",
                error,
            )
            tokenizer, stop_tokens = llm.get_tokenizer(), None
        return VLLMEngine(llm, self.model_name, self.max_lora_rank, self.model_path, stop_tokens, tokenizer)


class VLLMEngine:
    """In-process vLLM (`AsyncLLM`): base model plus hot-swappable LoRA adapters.

    Adapter names map to fresh vLLM LoRA ids on every load, so reloading a name never hits the old
    weights in vLLM's LoRA or prefix cache (both key on the id/name). An adapter that is unloaded or
    replaced leaves the engine only once its in-flight requests have finished.
    """

    kind = "vllm"

    def __init__(
        self,
        llm: "AsyncLLM",
        model_name: str,
        max_lora_rank: int,
        model_path: Path | None = None,
        stop_tokens: StopTokens | None = None,
        tokenizer: Any = None,
    ) -> None:
        self._llm: AsyncLLM | None = llm
        self.model_name = model_name
        self.model_path = model_path
        """The served model's folder: the server checks adapters' base model against it."""
        self.max_lora_rank = max_lora_rank
        self._adapters: dict[str, LoadedAdapter] = {}
        self._lora_ids = itertools.count(1)
        self._in_flight: dict[int, int] = {}
        self._retired: set[int] = set()
        self._adapter_lock = asyncio.Lock()
        self.count_tokens = TokenCounter(llm.get_tokenizer() if tokenizer is None else tokenizer)
        """On `tokenizer`, kotae's own instance of the engine's (`_read_tokenizer` says why)."""
        self.stop_tokens = stop_tokens
        """Handed to vLLM beside the answer stops (`kotae.rag.stop_tokens`); None: the stop strings alone
        (a benchmark compares the two)."""
        self.ends_loops = True
        """The engine core ends an answer once its tokens loop (`kotae.rag.loop_guard.ENGINE_LOOP_COPIES`):
        the loop guard's answer in fewer tokens. False: the batch path generates a looping answer to
        `max_tokens` before the guard cuts it (a benchmark compares the two)."""

    @classmethod
    def configure(
        cls,
        model: Path,
        settings: Settings,
        served_name: str | None = None,
        workload: Workload = "serve",
        profile_dir: Path | None = None,
    ) -> "VLLMLaunch":
        """vLLM imported and configured in the calling thread, not yet launched: scheduled for `workload`
        (`kotae.rag.scheduler_limits`), on a GPU with memory sized to the model (`kotae.rag.gpu_memory`)
        unless `gpu_memory_utilization` is set. With `profile_dir`, the engine can be profiled
        (`start_profile`): vLLM's torch profiler writes its traces and a table of the time spent per kernel
        there."""
        configure_vllm_environment(settings)
        launch_engine_cores_from_fork_server()
        from vllm import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.usage.usage_lib import UsageContext

        on_gpu = current_platform.is_cuda_alike()
        if not on_gpu:
            refuse_4bit_without_cpu_kernel(model)
        limits = scheduler_limits(settings, workload, on_gpu)
        logger.info(
            "vLLM scheduler for %s: max_num_seqs %s, max_num_batched_tokens %s (None: vLLM's default), "
            "prefix caching %s",
            workload,
            limits.max_num_seqs,
            limits.max_num_batched_tokens,
            "on" if limits.prefix_caching else "off",
        )
        device_args = (
            gpu_engine_args(model, settings, limits, current_platform.get_device_total_memory())
            if on_gpu
            else cpu_engine_args(settings, limits)
        )
        args = AsyncEngineArgs(
            model=str(model),
            served_model_name=served_name or model.name,
            max_model_len=settings.max_model_len,
            enable_lora=True,
            max_loras=settings.max_loras,
            max_lora_rank=settings.max_lora_rank,
            quantization=settings.quantization,
            max_num_seqs=limits.max_num_seqs,
            max_num_batched_tokens=limits.max_num_batched_tokens,
            disable_log_stats=False,
            **supported_args(AsyncEngineArgs, device_args | profiler_args(profile_dir)),
        )
        # vLLM sizes its batch by who starts it: the default engine context gets 128 sequences and
        # 2,048 tokens per step, its own OpenAI server up to 1,024 and 8,192–16,384 on large GPUs.
        # kotae's unset limits (always so on a CPU) take the server's defaults.
        config = args.create_engine_config(UsageContext.OPENAI_API_SERVER)
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kotae-tokenizer")
        tokenizer = reader.submit(_read_tokenizer, config.model_config.tokenizer)
        reader.shutdown(wait=False)
        return VLLMLaunch(config, served_name or model.name, settings.max_lora_rank, model, tokenizer)

    # -- generation -----------------------------------------------------------------------------

    async def stream(
        self, prompt: str, sampling: Sampling, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        """Stream an answer; the loop guard stops generation as soon as the answer starts repeating. The
        prompt reaches vLLM as token ids, as `complete_many`'s do."""
        from vllm.sampling_params import RequestOutputKind

        self._raise_if_dead()
        stop_tokens = self.stop_tokens
        params = _sampling_params(sampling, RequestOutputKind.CUMULATIVE, stop_tokens, self.ends_loops)
        started = time.perf_counter()
        first_token_s: float | None = None
        guard = LoopGuard()
        lora = self._lora_for(adapter)
        [tokens] = await asyncio.to_thread(self._tokens_prompts, [prompt])
        async with aclosing(self._outputs(tokens, params, lora)) as outputs:
            async for output in outputs:
                choice = output.outputs[0]
                if first_token_s is None and choice.token_ids:
                    first_token_s = time.perf_counter() - started
                if text := guard.feed(_answer_text(output, sampling, stop_tokens)):
                    yield Delta(text)
                if guard.looping or output.finished:
                    reason = "repetition" if guard.looping else (choice.finish_reason or "stop")
                    yield Delta(
                        "",
                        Completion(
                            text=guard.text,
                            prompt_tokens=len(output.prompt_token_ids or ()),
                            completion_tokens=len(choice.token_ids),
                            finish_reason=reason,
                            first_token_s=first_token_s,
                        ),
                    )
                    return

    async def complete(self, prompt: str, sampling: Sampling, adapter: str | None = None) -> Completion:
        """One answer, returned once finished, as `complete_many` returns each: vLLM sends the final
        output alone, as its own server does for a request that does not stream, where `stream` would wake
        the event loop at every token."""
        [completion] = await self.complete_many([prompt], sampling, adapter)
        return completion

    async def complete_many(
        self, prompts: list[str], sampling: Sampling, adapter: str | None = None, on_done: OnDone = None
    ) -> list[Completion]:
        """All prompts go to vLLM at once, so its scheduler batches them.

        The prompts reach vLLM as token ids, encoded in one batched call off the event loop by kotae's own
        tokenizer: vLLM would encode each text on the loop, one at a time, while the loop also carries
        every request's output, through a pool of tokenizer copies that deep-copies the whole tokenizer
        whenever more callers come at once than it holds (`_read_tokenizer`).
        Each answer comes back once, finished: streaming a thousand answers token by token costs a
        Python wake-up per token and request. The loop guard then cuts each text where `stream` would
        have stopped it (greedy decoding generates the same text either way); only the token count
        differs, since `stream` stops generating there and the engine core a few copies of the loop later.
        """
        from vllm.sampling_params import RequestOutputKind

        self._raise_if_dead()
        lora = self._lora_for(adapter)
        stop_tokens = self.stop_tokens
        params = _sampling_params(sampling, RequestOutputKind.FINAL_ONLY, stop_tokens, self.ends_loops)
        tokenized = await asyncio.to_thread(self._tokens_prompts, prompts)

        async def one(prompt: "TokensPrompt") -> Completion:
            final = None
            async with aclosing(self._outputs(prompt, params, lora)) as outputs:
                async for output in outputs:
                    final = output
            if final is None or not final.finished:
                raise EngineDead("the engine ended a request without a result")
            if on_done:
                on_done()
            return _finished_completion(final, _answer_text(final, sampling, stop_tokens))

        return list(await asyncio.gather(*(one(p) for p in tokenized)))

    def _tokens_prompts(self, prompts: list[str]) -> list["TokensPrompt"]:
        """The prompts as vLLM itself would tokenize them (special tokens added; kotae's prompts never
        reach its truncation length), with their texts."""
        from vllm.inputs import TokensPrompt

        ids = self.count_tokens.encode_many(prompts, add_special_tokens=True)
        return [
            TokensPrompt(prompt_token_ids=list(row), prompt=text)
            for row, text in zip(ids, prompts, strict=True)
        ]

    # -- adapters -------------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, LoadedAdapter]:
        return dict(self._adapters)

    async def load_adapter(self, name: str, path: Path) -> LoadedAdapter:
        """Load (or reload) `name` from `path`; when this returns, requests naming it get these weights."""
        from vllm.lora.request import LoRARequest

        self._raise_if_dead()
        async with self._adapter_lock:
            lora_id = next(self._lora_ids)
            request = LoRARequest(lora_name=f"{name}#{lora_id}", lora_int_id=lora_id, lora_path=str(path))
            # add_lora reads and validates the weights now: a bad adapter fails here, not on first use.
            await self._llm.add_lora(request)
            previous = self._adapters.get(name)
            self._adapters[name] = LoadedAdapter(name, path, request)
            if previous:
                await self._retire(previous.request.lora_int_id)
            return self._adapters[name]

    async def unload_adapter(self, name: str) -> None:
        async with self._adapter_lock:
            loaded = adapter_record(self._adapters, name, remove=True)
            await self._retire(loaded.request.lora_int_id)

    def _lora_for(self, adapter: str | None) -> "LoRARequest | None":
        if adapter is None:
            return None
        return adapter_record(self._adapters, adapter).request

    async def _outputs(
        self, prompt: "TokensPrompt", params: "SamplingParams", lora: "LoRARequest | None"
    ) -> AsyncIterator["RequestOutput"]:
        """vLLM's outputs for one request, counted against its adapter (for deferred removal). A request
        left before it finished (the caller stopped reading, the client went away) is aborted; a failure
        of the engine itself is raised as EngineDead. Use it under `aclosing`, so both happen at once."""
        request_id = uuid.uuid4().hex
        lora_id = lora.lora_int_id if lora else None
        finished = False
        self._enter(lora_id)
        try:
            async for output in self._llm.generate(prompt, params, request_id, lora_request=lora):
                finished = output.finished
                yield output
        except Exception as error:
            if self.errored:
                raise EngineDead("the generation engine has stopped") from error
            raise
        finally:
            if not finished:
                await self._llm.abort(request_id)
            self._leave(lora_id)

    def _enter(self, lora_id: int | None) -> None:
        if lora_id is not None:
            self._in_flight[lora_id] = self._in_flight.get(lora_id, 0) + 1

    def _leave(self, lora_id: int | None) -> None:
        if lora_id is None:
            return
        self._in_flight[lora_id] -= 1
        if self._in_flight[lora_id] == 0:
            del self._in_flight[lora_id]
            if lora_id in self._retired:
                self._retired.discard(lora_id)
                asyncio.get_running_loop().create_task(self._llm.remove_lora(lora_id))

    async def _retire(self, lora_id: int) -> None:
        """Drop a LoRA from the engine now, or after its last in-flight request."""
        if self._in_flight.get(lora_id):
            self._retired.add(lora_id)
        else:
            await self._llm.remove_lora(lora_id)

    # -- profiling ------------------------------------------------------------------------------

    async def start_profile(self) -> None:
        """Start vLLM's profiler (the engine must have been started with a `profile_dir`)."""
        self._raise_if_dead()
        await self._llm.start_profile()

    async def stop_profile(self) -> None:
        """Stop the profiler; vLLM then writes its trace and table into the `profile_dir`."""
        await self._llm.stop_profile()

    async def reset_prefix_cache(self) -> None:
        """Forget the cached prompt prefixes, so that prompts sent again are prefilled again (benchmarks
        timing repeated runs)."""
        await self._llm.reset_prefix_cache()

    # -- health ---------------------------------------------------------------------------------

    @property
    def errored(self) -> bool:
        return self._llm is None or bool(self._llm.errored)

    def _raise_if_dead(self) -> None:
        if self.errored:
            raise EngineDead("the generation engine has stopped")

    async def check_health(self) -> None:
        self._raise_if_dead()
        await self._llm.check_health()

    def shutdown(self) -> None:
        """Stop the engine; it then reads as dead. Dropping the reference now, not at interpreter exit,
        keeps vLLM's `__del__` from running its shutdown again against torn-down modules."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        llm.shutdown()
        # vLLM closes its sockets on the loop its output handler runs on. Called from outside that loop while
        # it is idle (a caller driving the engine with `run_until_complete`), the close is only queued there;
        # left open, the sockets make the zmq context's finaliser block forever when it is collected.
        handler = getattr(llm, "output_handler", None)
        loop = handler.get_loop() if handler is not None else None
        if loop is not None and not loop.is_running() and not loop.is_closed():
            loop.run_until_complete(asyncio.wait([handler], timeout=SHUTDOWN_CLOSE_S))
