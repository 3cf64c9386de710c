"""Stop tokens beside the stop strings give the answers the stop strings alone give, checked against vLLM's
own detokenizer on Gemma 3's tokenizer: every token sequence of a small alphabet of words, newlines and
hashes, up to four tokens long."""

import itertools

import pytest
from transformers import AutoTokenizer
from vllm import SamplingParams
from vllm.v1.engine import EngineCoreRequest
from vllm.v1.engine.detokenizer import IncrementalDetokenizer

from kotae.models.testing import gemma_tokenizer_dir
from kotae.rag.engine_protocol import ANSWER_STOPS
from kotae.rag.stop_tokens import StopTokens

NEWLINE, BLANK_LINE, THREE_NEWLINES = 107, 108, 109
HASH, TWO_HASHES, THREE_HASHES, SPACE_THREE_HASHES, FOUR_HASHES = 236865, 1408, 10354, 36675, 2595
TOKYO, FULL_STOP, SPACE = 31414, 236924, 236743
ALPHABET = [
    TOKYO, FULL_STOP, SPACE, NEWLINE, BLANK_LINE, THREE_NEWLINES,
    HASH, TWO_HASHES, THREE_HASHES, SPACE_THREE_HASHES, FOUR_HASHES,
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gemma_tokenizer_dir())


@pytest.fixture(scope="module")
def stop_tokens(tokenizer) -> StopTokens:
    return StopTokens.of(tokenizer, ANSWER_STOPS)


def test_the_stop_tokens_are_those_whose_text_holds_a_stop_string(tokenizer, stop_tokens) -> None:
    assert {BLANK_LINE, THREE_NEWLINES, THREE_HASHES, SPACE_THREE_HASHES, FOUR_HASHES} <= set(
        stop_tokens.texts
    )
    assert not {NEWLINE, HASH, TWO_HASHES, TOKYO} & set(stop_tokens.texts)
    for token, text in stop_tokens.texts.items():
        assert text == tokenizer.decode([token]) and any(stop in text for stop in ANSWER_STOPS)
    assert 0 < len(stop_tokens.texts) < 100  # a handful, which vLLM's engine core scans at every step


def test_they_serve_stop_strings_that_include_theirs(stop_tokens) -> None:
    assert stop_tokens.serve(ANSWER_STOPS) and stop_tokens.serve((*ANSWER_STOPS, "。"))
    assert not stop_tokens.serve(("\n\n",)) and not stop_tokens.serve(())


def answer(tokenizer, tokens: tuple[int, ...], stop_tokens: StopTokens | None) -> str:
    """The text vLLM's front end gives for an answer generated as `tokens`, which ends at the first stop
    string, at the first stop token when `stop_tokens` are given, or after the last token; then
    `StopTokens.text` on it."""
    params = SamplingParams(max_tokens=len(tokens), stop=list(ANSWER_STOPS))
    request = EngineCoreRequest(
        request_id="answer",
        prompt_token_ids=[2],
        mm_features=None,
        sampling_params=params,
        pooling_params=None,
        arrival_time=0.0,
        lora_request=None,
        cache_salt=None,
        data_parallel_rank=None,
    )
    detokenizer = IncrementalDetokenizer.from_new_request(tokenizer, request)
    stop_reason: object = None
    for token in tokens:
        stop_token = stop_tokens is not None and token in stop_tokens.texts
        if stop_string := detokenizer.update([token], stop_token):
            stop_reason = stop_string
            break
        if stop_token:
            stop_reason = token
            break
    text = detokenizer.get_next_output_text(finished=True, delta=False)
    return stop_tokens.text(text, stop_reason, ANSWER_STOPS) if stop_tokens else text


def test_an_answer_ended_by_a_stop_token_reads_as_the_stop_strings_alone_end_it(
    tokenizer, stop_tokens
) -> None:
    sequences = [tokens for n in range(1, 5) for tokens in itertools.product(ALPHABET, repeat=n)]
    differ = [
        tokens
        for tokens in sequences
        if answer(tokenizer, tokens, stop_tokens) != answer(tokenizer, tokens, None)
    ]
    assert not differ, [tokenizer.decode(tokens) for tokens in differ[:5]]
    # The stop tokens did end answers, some of them where the token's text had to be put back and cut.
    assert answer(tokenizer, (TOKYO, NEWLINE, BLANK_LINE), stop_tokens) == "東京"
    assert answer(tokenizer, (TOKYO, HASH, THREE_HASHES), stop_tokens) == "東京"


def test_other_endings_keep_their_text(stop_tokens) -> None:
    assert stop_tokens.text("東京\n", "\n\n", ANSWER_STOPS) == "東京\n"
    assert stop_tokens.text("東京", None, ANSWER_STOPS) == "東京"
    assert stop_tokens.text("東京", 1, ANSWER_STOPS) == "東京"  # the end of text: no stop token
