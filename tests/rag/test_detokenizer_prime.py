"""vLLM's incremental detokenizer under kotae's plugin (`kotae.rag.detokenizer_prime`): primed with the
prompt's last tokens, it streams the same text as vLLM's, primed with the whole prompt: for kotae's prompt
format, for prompts whose kept tail starts inside a character split into byte tokens, and for random answer
tokens (special and byte tokens among them) under Gemma 3's tokenizer and a SentencePiece one."""

import functools
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from decode_streams import recording_decode_streams
from transformers import AutoTokenizer
from vllm import SamplingParams

from kotae.models.testing import causal_tokenizer_dir, gemma_tokenizer_dir
from kotae.rag import detokenizer_prime
from kotae.rag.prompt import DEFAULT_PROMPTER

# A character the Gemma vocabulary spells as four byte tokens, and answers that mix byte tokens, spaces,
# digits and a stop string.
BYTES_CHAR = "𠮷"
ANSWERS = ("𠮷野家の牛丼", " 3776 m", "𩸽を食べた。\n\n### 指示", "富士山")
KOTAE_PROMPT = DEFAULT_PROMPTER.qa(
    "富士山の高さは？", [f"富士山は標高3776 mの日本最高峰である。{BYTES_CHAR}"] * 3
)


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    detokenizer_prime.register()
    detokenizer_prime.register()  # vLLM loads plugins once per process; a second call changes nothing


@functools.cache
def _tokenizer(folder: Callable[[], Path]) -> Any:
    return AutoTokenizer.from_pretrained(folder())


def _streamed(tokenizer: Any, prompt: list[int], answer: list[int], skip_special_tokens: bool = True) -> Any:
    """The text kotae's detokenizer and vLLM's stream for `answer` after `prompt`, token by token, and how
    many ids primed each one's stream."""
    from vllm.v1.engine.detokenizer import FastIncrementalDetokenizer

    request = SimpleNamespace(
        request_id="0",
        prompt_token_ids=prompt,
        prompt_embeds=None,
        sampling_params=SamplingParams(
            max_tokens=len(answer), stop=[], skip_special_tokens=skip_special_tokens
        ),
    )
    with recording_decode_streams() as primed_with:
        kotaes = FastIncrementalDetokenizer(tokenizer, request)
        kotaes_prime = primed_with[-1]
        vllms = FastIncrementalDetokenizer.__new__(FastIncrementalDetokenizer)
        FastIncrementalDetokenizer.__init__.__wrapped__(vllms, tokenizer, request)  # type: ignore[attr-defined]
        vllms_prime = primed_with[-1]
    texts: tuple[list[str], list[str]] = ([], [])
    for token in answer:
        for detokenizer, streamed in zip((kotaes, vllms), texts, strict=True):
            detokenizer.update([token], False)
            streamed.append(detokenizer.output_text)
    return texts, (kotaes_prime, vllms_prime)


def test_a_decoder_primed_with_the_prompts_tail_streams_vllms_text() -> None:
    tokenizer = _tokenizer(gemma_tokenizer_dir)
    byte_runs = [f"{'x' * offset}{BYTES_CHAR * 12}野" for offset in range(4)]
    for text in [KOTAE_PROMPT, *byte_runs]:
        prompt = tokenizer.encode(text)
        assert len(prompt) > detokenizer_prime.PROMPT_TAIL
        for answer_text in ANSWERS:
            answer = tokenizer.encode(answer_text, add_special_tokens=False)
            (kotaes, vllms), primes = _streamed(tokenizer, prompt, answer)
            assert primes == (detokenizer_prime.PROMPT_TAIL, len(prompt))
            assert kotaes == vllms
            assert kotaes[-1] == answer_text


@pytest.mark.parametrize("tokenizer_dir", [gemma_tokenizer_dir, causal_tokenizer_dir])
@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_random_answer_tokens_stream_vllms_text(tokenizer_dir: Any, skip_special_tokens: bool) -> None:
    tokenizer = _tokenizer(tokenizer_dir)
    prompt = tokenizer.encode(KOTAE_PROMPT)
    draw = random.Random(0)
    for _ in range(100):
        answer = [draw.randrange(len(tokenizer)) for _ in range(24)]
        (kotaes, vllms), _ = _streamed(tokenizer, prompt, answer, skip_special_tokens)
        assert kotaes == vllms
