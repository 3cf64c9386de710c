"""An adapter continued on a `kotae quantize` output trains against the rounded weights it is served on,
and the server takes it on that base only."""

import json
import shutil
from pathlib import Path

import pytest
from brief_runs import brief_sft
from rich.console import Console

from kotae.adapters.catalog import AdapterRejected
from kotae.adapters.metadata import read_metadata
from kotae.adapters.quantize import quantize_model
from kotae.adapters.training import base_load_options
from kotae.core.errors import KotaeError
from kotae.models.quantized import RECORD_FILE
from kotae.models.store import model_hash
from kotae.models.testing import build_tiny_gemma
from kotae.runtime import served_base

pytestmark = pytest.mark.slow  # quantizes with llm-compressor and trains on the CPU
GROUP = 128
"""W4A16's group: each run of 128 weights along a row shares one scale, so it holds at most 16 values."""


@pytest.fixture(scope="module")
def gptq_pair(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, Path]:
    """A tiny Gemma (128 wide: whole W4A16 groups) and its GPTQ W4A16 quantization."""
    folder = tmp_path_factory.mktemp("gptq")
    base = build_tiny_gemma(folder / "base", hidden_size=GROUP)
    w4 = folder / "w4a16"
    quantize_model(
        base, "gptq", "W4A16", [data_dir / "passages.jsonl"], w4, Console(), samples=6, max_seq_length=64
    )
    return base, w4


@pytest.fixture(scope="module")
def source_adapter(gptq_pair, examples_file, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A brief run on the 16-bit base the 4-bit one was quantized from."""
    source = tmp_path_factory.mktemp("source") / "source"
    brief_sft(gptq_pair[0], source, examples_file)
    return source


def test_the_4bit_base_trains_decompressed_to_its_rounded_weights(gptq_pair):
    import torch
    from transformers import AutoModelForCausalLM

    _, w4 = gptq_pair
    model = AutoModelForCausalLM.from_pretrained(w4, **base_load_options(w4, "float32"))
    layer = model.model.layers[0].mlp.down_proj
    assert type(layer) is torch.nn.Linear, "a plain layer, which LoRA wraps"
    assert all(group.unique().numel() <= 16 for group in layer.weight.detach().reshape(-1, GROUP))


def test_an_adapter_continued_on_the_gptq_base_serves_there_only(
    gptq_pair, source_adapter, examples_file, tmp_path
):
    base, w4 = gptq_pair
    tuned = brief_sft(w4, tmp_path / "tuned", examples_file, init_adapter=source_adapter)

    assert tuned.base_model.hash == model_hash(w4) and tuned.base_model.name == "w4a16"
    assert tuned.base_model.quantized_from == model_hash(base)
    assert tuned.continued_from is not None and tuned.continued_from.path == str(source_adapter.resolve())
    assert tuned.lora == read_metadata(source_adapter).lora
    adapter_config = json.loads((tmp_path / "tuned" / "adapter_config.json").read_text())
    assert served_base("w4a16", w4).check_adapter(adapter_config, tuned, "tuned") == "w4a16"
    with pytest.raises(AdapterRejected, match=r"tuned on 'w4a16', another build .* fits those weights alone"):
        served_base("base", base).check_adapter(adapter_config, tuned, "tuned")


def test_an_adapter_is_not_continued_on_an_awq_base(gptq_pair, source_adapter, examples_file, tmp_path):
    """AWQ rescales the activations a source adapter reads: it is no start for training there."""
    _, w4 = gptq_pair
    awq = tmp_path / "awq"
    shutil.copytree(w4, awq)
    record = json.loads((awq / RECORD_FILE).read_text())
    (awq / RECORD_FILE).write_text(json.dumps({**record, "method": "awq"}))

    with pytest.raises(KotaeError, match="quantized by AWQ from it"):
        brief_sft(awq, tmp_path / "tuned", examples_file, init_adapter=source_adapter)
