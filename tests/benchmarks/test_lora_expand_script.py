"""`benchmarks/lora_expand.py` times the expands of kotae's generator as vLLM merges its layers; the timing
itself is the GPU's."""

import json

from benchmark_scripts import load_script


def test_gemma_3_270ms_expands_are_its_merged_layers_and_equal_shapes_are_timed_once() -> None:
    script = load_script("lora_expand")
    assert script.layer_slices(script.generator_shape(None)) == {
        (2048, 2048): ["gate_up_proj"],
        (1024, 256, 256): ["qkv_proj"],
        (640,): ["o_proj", "down_proj"],
    }


def test_a_model_folders_config_gives_the_shapes(tmp_path) -> None:
    config = {
        "num_hidden_layers": 2,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    script = load_script("lora_expand")
    assert script.layer_slices(script.generator_shape(tmp_path)) == {
        (256, 256): ["gate_up_proj"],
        (64, 32, 32): ["qkv_proj"],
        (128,): ["o_proj", "down_proj"],
    }
