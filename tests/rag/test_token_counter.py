"""The token counter encodes as the tokenizer's own call does, for each family's tokenizer, from many
threads at once, and keeps the tokenizer's call where its backend is configured otherwise."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from kotae.models.testing import gemma_tokenizer_dir
from kotae.rag.token_counter import TokenCounter

TEXTS = [
    "富士山の高さは？",
    "### 指示:\n質問に答えなさい。\n\n### 入力:\n富士山 標高3,776メートル。\n\n### 応答:\n",
    "<start_of_turn>user\n東京<end_of_turn>\n<bos>",
    "  leading spaces, English words and 😀 emoji\t\n",
    "",
]


@pytest.fixture(params=["gemma", "tiny_llama", "tiny_gpt_neox_japanese", "tiny_rwkv"])
def tokenizer(request: pytest.FixtureRequest):
    path = gemma_tokenizer_dir() if request.param == "gemma" else request.getfixturevalue(request.param)
    return AutoTokenizer.from_pretrained(Path(path))


@pytest.mark.parametrize("special", [False, True])
def test_encodes_as_the_tokenizers_own_call(tokenizer, special: bool) -> None:
    counter = TokenCounter(tokenizer)
    expected = tokenizer(TEXTS, add_special_tokens=special)["input_ids"]
    assert counter.encode_many(TEXTS, add_special_tokens=special) == expected
    assert [counter(text) for text in TEXTS] == [
        len(ids) for ids in tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    ]


def test_encodes_from_many_threads_at_once(tokenizer) -> None:
    counter = TokenCounter(tokenizer)
    expected = counter.encode_many(TEXTS)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: counter.encode_many(TEXTS), range(64)))
    assert all(result == expected for result in results)


def test_a_backend_set_to_truncate_keeps_the_tokenizers_call(tokenizer) -> None:
    # The tokenizer's call clears the backend's truncation; encoding on the backend as it is would not.
    expected = tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    tokenizer.backend_tokenizer.enable_truncation(max_length=3)
    assert TokenCounter(tokenizer).encode_many(TEXTS) == expected


def test_a_known_batch_encodes_each_distinct_text_once(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TokenCounter(tokenizer)
    encoded: list[str] = []
    encode_many = counter.encode_many

    def recording(texts, add_special_tokens=False):
        encoded.extend(texts)
        return encode_many(texts, add_special_tokens)

    monkeypatch.setattr(counter, "encode_many", recording)
    count = counter.knowing([*TEXTS, *TEXTS[:2]])
    assert encoded == TEXTS, "one call, the repeated texts not encoded again"
    assert [count(text) for text in TEXTS] == counter.many(TEXTS)
    assert count("琵琶湖") == counter("琵琶湖"), "an unknown text is counted on its own"
