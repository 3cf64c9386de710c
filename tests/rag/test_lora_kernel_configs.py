"""kotae hands vLLM its LoRA kernel configurations, and vLLM's own reader takes the large-prefill shrink tiles
from them on an H200 and an H100 while keeping its defaults for decode-sized steps."""

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


def shrink_config(monkeypatch: pytest.MonkeyPatch, folder: Path | None, tokens: int, gpu: str) -> dict:
    """vLLM's shrink configuration for Gemma 3 270M's query/key/value LoRA (3 slices, 640 wide, rank 64)
    in a step of `tokens`, on the GPU named `gpu`, with `folder` as its tuned-config folder."""
    import torch
    from vllm.lora.ops.triton_ops import utils

    if folder is None:
        monkeypatch.delenv("VLLM_TUNED_CONFIG_FOLDER", raising=False)
    else:
        monkeypatch.setenv("VLLM_TUNED_CONFIG_FOLDER", str(folder))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: gpu)
    utils.load_lora_op_config.cache_clear()
    utils.get_lora_op_configs.cache_clear()
    return dict(
        utils.get_lora_op_configs("shrink", max_loras=5, batch=tokens, hidden_size=640, rank=64, num_slices=3)
    )


@pytest.mark.parametrize("gpu", GPUS)
def test_large_prefill_steps_take_whole_reduction_tiles_and_decode_steps_vllms_defaults(
    gpu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefill = shrink_config(monkeypatch, LORA_KERNEL_CONFIGS, 65536, gpu)
    assert (prefill["block_m"], prefill["block_n"], prefill["split_k"]) == (64, 64, 1)
    for tokens in (1, 64, 127, 128, 512, 4096):
        assert shrink_config(monkeypatch, LORA_KERNEL_CONFIGS, tokens, gpu) == shrink_config(
            monkeypatch, None, tokens, gpu
        )
