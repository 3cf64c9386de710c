"""Abstention: the one answer kotae gives when the passages do not hold the answer.

kotae abstains on either of two signals:

- the model's own answer is `NO_ANSWER` (an adapter trained with negative examples writes it when its
  passages lack the answer);
- the retrieval gate: no passage of the collection is as close to the question as
  `Settings.abstain_min_cosine` (dense cosine similarity), so the model is not asked at all.
"""

import unicodedata

from kotae.rag.engine_protocol import Completion

NO_ANSWER = "資料には答えが見つかりません。"
"""The answer, word for word, when the passages do not hold one; `/v1/qa` then says `answerable: false`."""


def _plain(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).removesuffix("。")


def is_no_answer(answer: str) -> bool:
    """Whether a cleaned answer is `NO_ANSWER` (width, whitespace and a final 。 aside), once or on each of
    its lines: a model may repeat it line after line, which the loop guard leaves when it is short."""
    lines = [_plain(line) for line in answer.splitlines()]
    return any(lines) and all(line == _plain(NO_ANSWER) for line in lines if line)


def passes_gate(best_cosine: float | None, min_cosine: float) -> bool:
    """Whether retrieval found something close enough to ask the model: always when the gate is off
    (`min_cosine` 0) or the collection was not searched (`best_cosine` None, e.g. given passages)."""
    return min_cosine <= 0 or best_cosine is None or best_cosine >= min_cosine


def gate_completion() -> Completion:
    """What stands for the model's completion when the gate abstains: `NO_ANSWER`, no token generated."""
    return Completion(
        NO_ANSWER, prompt_tokens=0, completion_tokens=0, finish_reason="stop", first_token_s=None
    )
