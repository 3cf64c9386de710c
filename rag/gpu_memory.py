"""The GPU memory kotae asks vLLM for: a KV cache for the configured concurrency, beside the model and its
adapters, rather than a share of the card (vLLM's default fills 90% of it, whatever the model)."""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotae.core.config import Settings

PROMPT_OVERHEAD_TOKENS = 256
"""Prompt tokens beside the passages' budget: the instruction, the question and the format's markers. A
longer prompt still runs; it borrows the room shorter ones leave."""

START_HEADROOM_BYTES = 4 * 2**30
"""Room for the CUDA context, activations and CUDA graphs, which vLLM measures itself: only the check of free
memory at start reads it."""

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What a decoder's config says about its memory."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    query_width: int
    """Attention heads × head size: the width of the query and output projections."""
    dtype_bytes: int
    """Bytes of one activation value (and of one KV cache entry, vLLM's default KV dtype)."""

    @classmethod
    def of(cls, config: dict[str, Any]) -> "ModelShape":
        """From a Hugging Face `config.json` (a multimodal one's `text_config`). A 32-bit model counts 4
        bytes a value, which over-reserves where vLLM runs it in 16 bits."""
        text = config.get("text_config") or config
        heads = text["num_attention_heads"]
        head_dim = text.get("head_dim") or text["hidden_size"] // heads
        dtype = str(text.get("dtype") or text.get("torch_dtype") or config.get("torch_dtype") or "float32")
        return cls(
            layers=text["num_hidden_layers"],
            kv_heads=text.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            hidden=text["hidden_size"],
            intermediate=text.get("intermediate_size") or 4 * text["hidden_size"],
            query_width=heads * head_dim,
            dtype_bytes=_DTYPE_BYTES.get(dtype.removeprefix("torch."), 4),
        )

    @property
    def kv_bytes_per_token(self) -> int:
        """A key and a value per KV head in every layer (counting sliding-window layers as full ones)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    def lora_bytes(self, rank: int) -> int:
        """One adapter slot of `rank` on every linear layer of the blocks (attention q/k/v/o, MLP
        gate/up/down): rank × (inputs + outputs) values per layer."""
        kv_width = self.kv_heads * self.head_dim
        attention = 2 * (self.hidden + self.query_width) + 2 * (self.hidden + kv_width)
        mlp = 3 * (self.hidden + self.intermediate)
        return self.layers * rank * (attention + mlp) * self.dtype_bytes


@dataclass(frozen=True, slots=True)
class GpuMemoryPlan:
    """What kotae reserves on the GPU, and why."""

    sequences: int
    """Sequences in flight at once (the workload's `max_num_seqs`)."""
    tokens_per_sequence: int
    kv_bytes_per_token: int
    min_tokens: int
    """vLLM refuses a KV cache that cannot hold one sequence of `max_model_len`."""
    weights_bytes: int
    adapter_bytes: int
    """`max_loras` slots of `max_lora_rank`."""

    @property
    def kv_cache_tokens(self) -> int:
        return max(self.sequences * self.tokens_per_sequence, self.min_tokens)

    @property
    def kv_cache_bytes(self) -> int:
        return self.kv_cache_tokens * self.kv_bytes_per_token

    @property
    def total_bytes(self) -> int:
        """The KV cache, weights and adapter slots, and the headroom vLLM's start needs beside them."""
        return self.kv_cache_bytes + self.weights_bytes + self.adapter_bytes + START_HEADROOM_BYTES

    def share_of(self, device_bytes: int) -> float:
        """`total_bytes` as a share of a card of `device_bytes` (rounded up to a hundredth): vLLM checks at
        start that this much of the card is free, even when it is told the KV cache's size."""
        return min(1.0, math.ceil(self.total_bytes / device_bytes * 100) / 100)

    def describe(self) -> str:
        """One log line: each part and where it comes from."""
        return (
            f"GPU memory sized to the model: KV cache {_gib(self.kv_cache_bytes)} GiB "
            f"({self.sequences} sequences × {self.tokens_per_sequence} tokens × {self.kv_bytes_per_token} "
            f"bytes a token), weights {_gib(self.weights_bytes)} GiB, adapter slots about "
            f"{_gib(self.adapter_bytes)} GiB, plus the activations and CUDA graphs vLLM measures at start "
            f"(KOTAE_GPU_MEMORY_UTILIZATION takes a share of the card instead)"
        )


def plan_gpu_memory(model: Path, settings: Settings, sequences: int) -> GpuMemoryPlan:
    """The KV cache for `sequences` prompts of the full passage budget plus `max_tokens` answers each, and
    the model's and adapters' share beside it."""
    shape = ModelShape.of(json.loads((model / "config.json").read_text(encoding="utf-8")))
    per_sequence = settings.context_token_budget + PROMPT_OVERHEAD_TOKENS + settings.max_tokens
    return GpuMemoryPlan(
        sequences=sequences,
        tokens_per_sequence=min(per_sequence, settings.max_model_len),
        kv_bytes_per_token=shape.kv_bytes_per_token,
        min_tokens=settings.max_model_len,
        weights_bytes=sum(path.stat().st_size for path in model.glob("*.safetensors")),
        adapter_bytes=settings.max_loras * shape.lora_bytes(settings.max_lora_rank),
    )


def _gib(size: int) -> str:
    return f"{math.ceil(size / 2**30 * 100) / 100:.2f}"
