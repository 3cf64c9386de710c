"""kotae hands vLLM its LoRA kernel configurations, and vLLM's own reader takes the large-prefill shrink and
expand tiles from them on an H200 and an H100 while keeping its defaults for smaller steps."""

import os
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.rag.engine import LORA_KERNEL_CONFIGS, configure_vllm_environment


def test_vllm_is_handed_kotaes_configurations_unless_the_user_named_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_TUNED_CONFIG_FOLDER", raising=False)
    configure_vllm_environment(Settings(home=tmp_path))
    assert os.environ["VLLM_TUNED_CONFIG_FOLDER"] == str(LORA_KERNEL_CONFIGS)
    monkeypatch.setenv("VLLM_TUNED_CONFIG_FOLDER", str(tmp_path / "mine"))
    configure_vllm_environment(Settings(home=tmp_path))
    assert os.environ["VLLM_TUNED_CONFIG_FOLDER"] == str(tmp_path / "mine")


GPUS = ["NVIDIA H200", "NVIDIA H100 80GB HBM3"]
"""The names `torch.cuda.get_device_name` gives the cards kotae has a configuration for."""


GEMMA_EXPANDS = [(1, 640), (2, 2048), (3, 1024)]
"""Gemma 3 270M's LoRA expands as (slices, widest slice): o_proj and down_proj, gate_up_proj, qkv_proj."""


def op_config(
    monkeypatch: pytest.MonkeyPatch,
    folder: Path | None,
    op: str,
    tokens: int,
    gpu: str,
    hidden_size: int = 640,
    num_slices: int = 3,
) -> dict:
    """vLLM's configuration of LoRA op `op` (rank 64, kotae's 4 adapter slots) in a step of `tokens`, on the
    GPU named `gpu`, with `folder` as its tuned-config folder; by default Gemma 3 270M's query/key/value
    shrink (3 slices from a 640-wide input)."""
    import torch
    from vllm.lora.ops.triton_ops import utils

    if folder is None:
        monkeypatch.delenv("VLLM_TUNED_CONFIG_FOLDER", raising=False)
    else:
        monkeypatch.setenv("VLLM_TUNED_CONFIG_FOLDER", str(folder))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: gpu)
    utils.load_lora_op_config.cache_clear()
    utils.get_lora_op_configs.cache_clear()
    adds = {"add_inputs": True} if op == "expand" else {}
    return dict(
        utils.get_lora_op_configs(
            op, max_loras=5, batch=tokens, hidden_size=hidden_size, rank=64, num_slices=num_slices, **adds
        )
    )


@pytest.mark.parametrize("gpu", GPUS)
def test_large_prefill_steps_take_whole_reduction_tiles_and_decode_steps_vllms_defaults(
    gpu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefill = op_config(monkeypatch, LORA_KERNEL_CONFIGS, "shrink", 65536, gpu)
    assert (prefill["block_m"], prefill["block_n"], prefill["split_k"]) == (64, 64, 1)
    for tokens in (1, 64, 127, 128, 512, 4096):
        assert op_config(monkeypatch, LORA_KERNEL_CONFIGS, "shrink", tokens, gpu) == op_config(
            monkeypatch, None, "shrink", tokens, gpu
        )


@pytest.mark.parametrize("gpu", GPUS)
@pytest.mark.parametrize(("slices", "width"), GEMMA_EXPANDS)
def test_an_evals_prefill_steps_expand_over_the_whole_rank_and_smaller_steps_keep_vllms_tiles(
    gpu: str, slices: int, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefill = op_config(monkeypatch, LORA_KERNEL_CONFIGS, "expand", 65536, gpu, width, slices)
    assert (prefill["block_m"], prefill["block_n"], prefill["block_k"]) == (128, 64, 64)
    for tokens in (1, 128, 1024, 8192, 30000):
        assert op_config(monkeypatch, LORA_KERNEL_CONFIGS, "expand", tokens, gpu, width, slices) == op_config(
            monkeypatch, None, "expand", tokens, gpu, width, slices
        )
