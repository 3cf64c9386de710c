"""vLLM's pool of tokenizer copies under kotae's plugin (`kotae.rag.tokenizer_pool`): it starts empty, and a
call on the pooled tokenizer still runs on a copy of its own, made once and kept. That an engine's start
copies nothing is `tests/rag/test_engine_batch.py`'s."""

import copy

from tokenizer_copies import counting_tokenizer_copies
from transformers import AutoTokenizer

from kotae.models.testing import gemma_tokenizer_dir
from kotae.rag import tokenizer_pool

QUESTION = "富士山の高さは？"


def test_the_pool_starts_empty_and_keeps_the_copy_a_call_made() -> None:
    from vllm.renderers import hf as renderer

    tokenizer_pool.register()
    tokenizer_pool.register()  # vLLM loads plugins once per process; a second call changes nothing
    tokenizer = AutoTokenizer.from_pretrained(gemma_tokenizer_dir())
    expected = tokenizer.encode(QUESTION)
    with counting_tokenizer_copies() as copies:
        pooled = renderer.maybe_make_thread_pool(copy.copy(tokenizer), 2)
        assert copies == []
        assert [pooled.encode(QUESTION) for _ in range(3)] == [expected] * 3
    assert len(copies) == 1
