"""vLLM's incremental detokenizer under kotae's plugin (`kotae.rag.detokenizer_prime`): primed with the
prompt's last tokens, it streams the same text as vLLM's, primed with the whole prompt, for kotae's prompt
format and for prompts whose kept tail starts inside a character split into byte tokens."""

from types import SimpleNamespace

import pytest
from decode_streams import recording_decode_streams
from transformers import AutoTokenizer
from vllm import SamplingParams

from kotae.models.testing import gemma_tokenizer_dir
from kotae.rag import detokenizer_prime
from kotae.rag.prompt import DEFAULT_PROMPTER

# A character the Gemma vocabulary spells as four byte tokens, and answers that mix byte tokens, spaces,
# digits and a stop string.
BYTES_CHAR = "𠮷"
ANSWERS = ("𠮷野家の牛丼", " 3776 m", "𩸽を食べた。\n\n### 指示", "富士山")


@pytest.fixture(scope="module")
def tokenizer() -> object:
    detokenizer_prime.register()
    detokenizer_prime.register()  # vLLM loads plugins once per process; a second call changes nothing
    return AutoTokenizer.from_pretrained(gemma_tokenizer_dir())


def _prompts(tokenizer: object) -> list[list[int]]:
    kotae_prompt = DEFAULT_PROMPTER.qa("富士山の高さは？", ["富士山は標高3776 mの日本最高峰である。"] * 3)
    byte_runs = [f"{'x' * offset}{BYTES_CHAR * 12}野" for offset in range(4)]
    return [tokenizer.encode(text) for text in [kotae_prompt, *byte_runs]]  # type: ignore[attr-defined]


def _streamed(detokenizer: object, answer: list[int]) -> list[str]:
    texts = []
    for token in answer:
        detokenizer.update([token], False)  # type: ignore[attr-defined]
        texts.append(detokenizer.output_text)  # type: ignore[attr-defined]
    return texts


def test_a_decoder_primed_with_the_prompts_tail_streams_vllms_text(tokenizer: object) -> None:
    from vllm.v1.engine.detokenizer import FastIncrementalDetokenizer

    vllms_start = FastIncrementalDetokenizer.__init__.__wrapped__  # type: ignore[attr-defined]
    with recording_decode_streams() as primed_with:
        for number, prompt in enumerate(_prompts(tokenizer)):
            assert len(prompt) > detokenizer_prime.PROMPT_TAIL
            for answer_text in ANSWERS:
                answer = tokenizer.encode(answer_text, add_special_tokens=False)  # type: ignore[attr-defined]
                request = SimpleNamespace(
                    request_id=f"{number}-{answer_text}",
                    prompt_token_ids=prompt,
                    prompt_embeds=None,
                    sampling_params=SamplingParams(max_tokens=len(answer), stop=[]),
                )
                primed_with.clear()
                kotaes = FastIncrementalDetokenizer(tokenizer, request)
                assert primed_with[-1] == detokenizer_prime.PROMPT_TAIL
                vllms = FastIncrementalDetokenizer.__new__(FastIncrementalDetokenizer)
                vllms_start(vllms, tokenizer, request)
                assert primed_with[-1] == len(prompt)
                assert _streamed(kotaes, answer) == _streamed(vllms, answer)
                assert kotaes.output_text == answer_text
