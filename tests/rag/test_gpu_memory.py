"""GPU memory sized to the model: a KV cache for the configured concurrency, in the model's bytes a token."""

import dataclasses
import json
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.rag.engine import gpu_engine_args, supported_args
from kotae.rag.gpu_memory import PROMPT_OVERHEAD_TOKENS, ModelShape, plan_gpu_memory
from kotae.rag.scheduler_limits import SchedulerLimits

GEMMA_3_270M = {
    "architectures": ["Gemma3ForCausalLM"],
    "dtype": "bfloat16",
    "head_dim": 256,
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_attention_heads": 4,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
}


def _model(folder: Path, config: dict, weights_bytes: int = 1000) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"\0" * weights_bytes)
    return folder


def test_kv_bytes_a_token_are_a_key_and_a_value_per_kv_head_and_layer() -> None:
    shape = ModelShape.of(GEMMA_3_270M)
    assert shape.kv_bytes_per_token == 2 * 18 * 1 * 256 * 2
    # No head_dim or KV heads given (multi-head attention), nested as a multimodal config, 32-bit.
    plain = {"num_attention_heads": 8, "hidden_size": 512, "num_hidden_layers": 2, "torch_dtype": "float32"}
    assert ModelShape.of({"text_config": plain}).kv_bytes_per_token == 2 * 2 * 8 * 64 * 4


def test_an_adapter_slot_covers_every_linear_layer() -> None:
    shape = ModelShape.of(GEMMA_3_270M)
    per_layer = (640 + 1024) * 2 + (640 + 256) * 2 + 3 * (640 + 2048)
    assert shape.lora_bytes(64) == 18 * 64 * per_layer * 2


def test_the_kv_cache_holds_every_sequence_of_a_full_prompt_and_answer(tmp_path: Path) -> None:
    settings = Settings(max_loras=4, max_lora_rank=64)
    model = _model(tmp_path / "gemma", GEMMA_3_270M, weights_bytes=4096)
    plan = plan_gpu_memory(model, settings, sequences=256)
    per_sequence = settings.context_token_budget + PROMPT_OVERHEAD_TOKENS + settings.max_tokens
    assert plan.tokens_per_sequence == per_sequence
    assert plan.kv_cache_bytes == 256 * per_sequence * 18_432
    assert plan.weights_bytes == 4096
    assert plan.adapter_bytes == 4 * ModelShape.of(GEMMA_3_270M).lora_bytes(64)
    described = plan.describe()
    assert "256 sequences" in described and f"{per_sequence} tokens" in described
    assert "KOTAE_GPU_MEMORY_UTILIZATION" in described


def test_it_never_holds_less_than_one_sequence_of_the_full_context(tmp_path: Path) -> None:
    settings = Settings(max_model_len=1024, context_token_budget=2048)
    plan = plan_gpu_memory(_model(tmp_path / "gemma", GEMMA_3_270M), settings, sequences=1)
    assert plan.tokens_per_sequence == 1024  # a prompt never exceeds the context length
    plan = plan_gpu_memory(_model(tmp_path / "short", GEMMA_3_270M), Settings(max_model_len=8192), 1)
    assert plan.kv_cache_tokens == 8192  # vLLM refuses a cache that cannot hold one full sequence


def test_the_share_of_the_card_stays_an_override() -> None:
    assert Settings().gpu_memory_utilization is None
    assert Settings(gpu_memory_utilization=0.3).gpu_memory_utilization == pytest.approx(0.3)


def test_the_engine_gets_the_plans_kv_cache_or_the_share_it_was_told(tmp_path: Path) -> None:
    model = _model(tmp_path / "gemma", GEMMA_3_270M)
    limits, card = SchedulerLimits(256, 8192, prefix_caching=False), 140 * 2**30
    plan = plan_gpu_memory(model, Settings(), 256)
    sized = gpu_engine_args(model, Settings(), limits, card)
    common = {
        "cudagraph_capture_sizes": limits.cuda_graph_sizes,
        "compilation_config": {"cudagraph_specialize_lora": False},
        "enable_prefix_caching": False,
    }
    assert sized == {
        "kv_cache_memory_bytes": plan.kv_cache_bytes,
        "gpu_memory_utilization": plan.share_of(card),
        **common,
    }
    # The share vLLM checks is free at start: the plan, its headroom, rounded up to a hundredth.
    assert plan.total_bytes == plan.kv_cache_bytes + plan.weights_bytes + plan.adapter_bytes + 4 * 2**30
    assert plan.total_bytes / card <= plan.share_of(card) < plan.total_bytes / card + 0.01
    assert plan.share_of(2**30) == 1.0
    told = gpu_engine_args(model, Settings(gpu_memory_utilization=0.3), limits, card)
    assert told == {"gpu_memory_utilization": 0.3, **common}


def test_arguments_an_older_vllm_lacks_are_left_out() -> None:
    @dataclasses.dataclass
    class OldEngineArgs:
        model: str = ""
        gpu_memory_utilization: float = 0.9

    wanted = {"gpu_memory_utilization": 0.3, "kv_cache_memory_bytes": 1, "model": None}
    assert supported_args(OldEngineArgs, wanted) == {"gpu_memory_utilization": 0.3}
