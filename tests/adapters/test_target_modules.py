"""LoRA's default target modules are read from the model: every linear layer of its blocks, by family."""

from pathlib import Path

import pytest

from kotae.adapters.training import block_linear_layers

ATTENTION_MLP = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")
NEOX = ("dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value")
SMALL = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, vocab_size=128
)


@pytest.mark.parametrize(
    ("config_class", "shape", "expected"),
    [
        ("LlamaConfig", SMALL, ATTENTION_MLP),
        ("Gemma3TextConfig", {**SMALL, "head_dim": 32}, ATTENTION_MLP),
        ("GPTNeoXConfig", SMALL, NEOX),
        ("GPTNeoXJapaneseConfig", SMALL, NEOX),
        (
            "RwkvConfig",
            dict(hidden_size=64, num_hidden_layers=1, vocab_size=128),
            ("key", "output", "receptance", "value"),
        ),
    ],
)
def test_every_linear_layer_of_the_blocks_but_the_output_head(tmp_path: Path, config_class, shape, expected):
    import transformers

    getattr(transformers, config_class)(**shape).save_pretrained(tmp_path)
    assert block_linear_layers(tmp_path) == expected
