"""vLLM's pool of tokenizer copies under kotae's plugin (`kotae.rag.tokenizer_pool`): it starts empty, and a
call on the pooled tokenizer still runs on a copy of its own, made once and kept. That an engine's start
copies nothing is `tests/rag/test_engine_batch.py`'s."""

import copy
from typing import Any

import pytest
from transformers import AutoTokenizer

from kotae.models.testing import gemma_tokenizer_dir
from kotae.rag import tokenizer_pool

QUESTION = "富士山の高さは？"


@pytest.fixture
def copies(monkeypatch) -> list[str]:
    made: list[str] = []
    deepcopy = copy.deepcopy

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(value, "backend_tokenizer"):
            made.append(type(value).__name__)
        return deepcopy(value, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", counting)
    return made


def test_the_pool_starts_empty_and_keeps_the_copy_a_call_made(copies: list[str]) -> None:
    from vllm.renderers import hf as renderer

    tokenizer_pool.register()
    tokenizer_pool.register()  # vLLM loads plugins once per process; a second call changes nothing
    tokenizer = AutoTokenizer.from_pretrained(gemma_tokenizer_dir())
    expected = tokenizer.encode(QUESTION)
    pooled = renderer.maybe_make_thread_pool(copy.copy(tokenizer), 2)
    assert copies == []
    assert [pooled.encode(QUESTION) for _ in range(3)] == [expected] * 3
    assert len(copies) == 1
