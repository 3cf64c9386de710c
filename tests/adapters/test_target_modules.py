"""LoRA's default target modules are read from the model, by family: every linear layer of its blocks, and
the embeddings CPT trains in full."""

from pathlib import Path

import pytest

from kotae.adapters.training import block_linear_layers, embedding_layers

ATTENTION_MLP = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")
NEOX = ("dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value")
SMALL = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, vocab_size=128
)


@pytest.mark.parametrize(
    ("config_class", "shape", "linear", "embeddings"),
    [
        ("LlamaConfig", SMALL, ATTENTION_MLP, ("embed_tokens", "lm_head")),
        ("Gemma3TextConfig", {**SMALL, "head_dim": 32}, ATTENTION_MLP, ("embed_tokens", "lm_head")),
        ("GPTNeoXConfig", SMALL, NEOX, ("embed_in", "lm_head")),
        ("GPTNeoXJapaneseConfig", SMALL, NEOX, ("embed_in", "embed_out")),
        (
            "RwkvConfig",
            dict(hidden_size=64, num_hidden_layers=1, vocab_size=128),
            ("key", "output", "receptance", "value"),
            ("embeddings", "head"),
        ),
    ],
)
def test_linear_layers_of_the_blocks_and_the_embeddings_by_family(
    tmp_path: Path, config_class, shape, linear, embeddings
):
    import transformers

    getattr(transformers, config_class)(**shape).save_pretrained(tmp_path)
    assert block_linear_layers(tmp_path) == linear
    assert embedding_layers(tmp_path) == embeddings
