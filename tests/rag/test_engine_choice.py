"""vLLM serves the architectures its registry or its transformers backend knows; kotae sends the others to
the transformers engine."""

from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.rag.engine import unserved_architecture


@pytest.mark.parametrize(
    ("config_class", "unknown"),
    [
        ("LlamaConfig", None),
        ("GPTNeoXConfig", None),
        ("Gemma3TextConfig", None),
        ("GPTNeoXJapaneseConfig", "GPTNeoXJapaneseForCausalLM"),
        ("RwkvConfig", "RwkvForCausalLM"),
    ],
)
def test_architectures_vllm_does_not_serve_are_named(tmp_path: Path, config_class: str, unknown: str | None):
    import transformers

    config = getattr(transformers, config_class)()
    config.architectures = [
        config_class.replace("TextConfig", "ForCausalLM").replace("Config", "ForCausalLM")
    ]
    config.save_pretrained(tmp_path)
    assert unserved_architecture(tmp_path, Settings()) == unknown
