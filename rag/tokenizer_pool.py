"""vLLM's pool of tokenizer copies, filled in the background instead of at the engine's start or its first
request.

vLLM's renderer makes the tokenizer it hands out safe to share between threads by routing each call
through a pool of deep copies (`vllm.tokenizers.hf.maybe_make_thread_pool`), `renderer_num_workers + 1` of
them, made when the engine starts, in the process that then launches the engine core: 2.8 s a copy for
Gemma 3's vocabulary on the 2-core CPU machine, before the engine core starts. kotae's prompts reach vLLM as
token ids from its own tokenizer (`kotae.rag.engine`), and vLLM's detokenizer reads the Rust tokenizer
directly, so one copy serves: vLLM borrows it for each request's `eos_token_id` on the event loop. The pool
starts empty and a thread of its own makes that copy while the engine core starts; without it, the first
request made it on the event loop, which then stalled every other request (1.2 s on an H100 machine's host).
A call that finds the pool empty still makes a copy of its own and leaves it there, as vLLM's pool does when
every copy is borrowed. Installed in every vLLM process as a `vllm.general_plugins` entry point.
"""

import threading
from typing import Any

COPYING_THREAD = "kotae-tokenizer-copy"
"""The name of the thread that makes the pool's copy."""


def register() -> None:
    """vLLM general plugin: the renderer's tokenizer pool starts empty and gets its copy in the background."""
    from vllm.renderers import hf as renderer

    make_pool = renderer.maybe_make_thread_pool
    if getattr(make_pool, "fills_in_background", False):  # plugins load once per process; tests call it again
        return

    def pool_filled_in_background(tokenizer: Any, copies: int = 1) -> Any:
        pooled = make_pool(tokenizer, 0)
        # Any call on the pooled tokenizer borrows from the pool: finding it empty, it copies.
        threading.Thread(
            target=pooled.convert_tokens_to_ids, args=([],), name=COPYING_THREAD, daemon=True
        ).start()
        return pooled

    pool_filled_in_background.fills_in_background = True  # type: ignore[attr-defined]
    renderer.maybe_make_thread_pool = pool_filled_in_background
