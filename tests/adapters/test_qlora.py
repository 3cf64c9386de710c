"""QLoRA: the frozen base loads in 4-bit NF4 through bitsandbytes (which runs on the CPU too), LoRA trains on
top, and the adapter belongs to the 16-bit base, where vLLM serves it."""

import json
import shutil

import pytest
from brief_runs import RANK8, brief_sft

from kotae.adapters.config import LoraSpec
from kotae.adapters.training import base_load_options
from kotae.core.errors import KotaeError
from kotae.models.store import model_hash
from kotae.rag.engine_protocol import Sampling

pytestmark = pytest.mark.slow  # trains on the CPU


def test_the_frozen_base_loads_in_nf4(tiny_gemma):
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma, **base_load_options(tiny_gemma, "float32", True))
    assert model.is_loaded_in_4bit
    layer = model.model.layers[0].mlp.down_proj
    assert isinstance(layer, Linear4bit) and layer.weight.quant_state.quant_type == "nf4"


def test_a_qlora_adapter_trains_and_serves_on_the_16bit_base(tiny_gemma, examples_file, tmp_path, served):
    from safetensors.torch import load_file

    out = tmp_path / "qlora"
    # At a high rate two steps move the adapter far enough to change what the model says.
    metadata = brief_sft(tiny_gemma, out, examples_file, lora=RANK8, load_in_4bit=True, learning_rate=3e-2)

    assert metadata.hyperparameters["load_in_4bit"] is True
    assert metadata.base_model.hash == model_hash(tiny_gemma), "the adapter belongs to the 16-bit base"
    lora_b = [t for name, t in load_file(out / "adapter_model.safetensors").items() if "lora_B" in name]
    assert lora_b and any(t.abs().max() > 0 for t in lora_b), "B starts at zero: training moved it"

    continued = brief_sft(
        tiny_gemma, tmp_path / "continued", examples_file, init_adapter=out, load_in_4bit=True
    )
    assert continued.continued_from is not None and continued.lora == metadata.lora

    served.run(served.engine.load_adapter("qlora", out))
    prompt = json.loads(examples_file.read_text(encoding="utf-8").splitlines()[0])["prompt"]
    tuned = served.run(served.engine.complete(prompt, Sampling(max_tokens=8), "qlora"))
    base = served.run(served.engine.complete(prompt, Sampling(max_tokens=8)))
    assert tuned.completion_tokens > 0 and tuned.text != base.text


def test_qlora_needs_a_16bit_base_and_lora_alone(tiny_gemma, examples_file, tmp_path):
    quantized = tmp_path / "quantized"
    shutil.copytree(tiny_gemma, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "compressed-tensors"}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(KotaeError, match="quantized already"):
        brief_sft(quantized, tmp_path / "a", examples_file, load_in_4bit=True)

    embeddings = LoraSpec(modules_to_save=("embed_tokens",))
    with pytest.raises(KotaeError, match="LoRA only"):
        brief_sft(tiny_gemma, tmp_path / "b", examples_file, lora=embeddings, load_in_4bit=True)
