"""vLLM's pool of tokenizer copies, filled on first use instead of at every engine start.

vLLM's renderer makes the tokenizer it hands out safe to share between threads by routing each call
through a pool of deep copies (`vllm.tokenizers.hf.maybe_make_thread_pool`), `renderer_num_workers + 1` of
them, made when the engine starts, in the process that then launches the engine core: 2.8 s a copy for
Gemma 3's vocabulary on the 2-core CPU machine, before the engine core starts. kotae never borrows from the
pool: its prompts reach vLLM as token ids from its own tokenizer (`kotae.rag.engine`), and vLLM's
detokenizer reads the Rust tokenizer directly. So the pool starts empty: a call that finds it empty makes
its copy then, as vLLM's pool does when every copy is borrowed, and leaves it in the pool for the next.
Installed in every vLLM process as a `vllm.general_plugins` entry point.
"""

from typing import Any


def register() -> None:
    """vLLM general plugin: the renderer's tokenizer pool starts empty."""
    from vllm.renderers import hf as renderer

    make_pool = renderer.maybe_make_thread_pool
    if getattr(make_pool, "starts_empty", False):  # plugins load once per process; tests may call it again
        return

    def empty_pool(tokenizer: Any, copies: int = 1) -> Any:
        return make_pool(tokenizer, 0)

    empty_pool.starts_empty = True  # type: ignore[attr-defined]
    renderer.maybe_make_thread_pool = empty_pool
