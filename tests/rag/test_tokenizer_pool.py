"""vLLM's pool of tokenizer copies under kotae's plugin (`kotae.rag.tokenizer_pool`): it gets one copy, made
in a thread of its own, and calls on the pooled tokenizer run on it. That an engine's requests copy nothing
is `tests/rag/test_engine_batch.py`'s."""

import copy

from tokenizer_copies import counting_tokenizer_copies, wait_for_the_pools_copy
from transformers import AutoTokenizer

from kotae.models.testing import gemma_tokenizer_dir
from kotae.rag import tokenizer_pool

QUESTION = "富士山の高さは？"


def test_the_pool_gets_one_copy_in_the_background_and_calls_use_it() -> None:
    from vllm.renderers import hf as renderer

    tokenizer_pool.register()
    tokenizer_pool.register()  # vLLM loads plugins once per process; a second call changes nothing
    tokenizer = AutoTokenizer.from_pretrained(gemma_tokenizer_dir())
    expected = tokenizer.encode(QUESTION)
    with counting_tokenizer_copies() as copies:
        pooled = renderer.maybe_make_thread_pool(copy.copy(tokenizer), 2)
        wait_for_the_pools_copy()
        assert copies == [(type(tokenizer).__name__, tokenizer_pool.COPYING_THREAD)]
        assert [pooled.encode(QUESTION) for _ in range(3)] == [expected] * 3
    assert len(copies) == 1
