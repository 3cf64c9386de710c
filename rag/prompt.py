"""The 指示/入力/応答 prompt, exactly as the seeds and llm-jp-eval write it.

Training (kotae.adapters) and serving both build prompts here, so an adapter sees at serve time the
bytes it was trained on.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kotae.core.passage import Passage
from kotae.rag.engine_protocol import ANSWER_STOPS
from kotae.rag.loop_guard import cut_repetition

PROMPT_VERSION = "alpaca-ja-v1"
"""Recorded in adapter metadata; bump when the template changes."""

PREAMBLE = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)
TEMPLATE = PREAMBLE + "\n\n### 指示:\n{question}\n\n### 入力:\n{contexts}\n\n### 応答:\n"


def context_line(passage: Passage) -> str:
    """One `title text` line; newlines inside a passage would break the one-line-per-passage layout."""
    text = " ".join(passage.text.split())
    return f"{passage.title} {text}" if passage.title else text


def fit_contexts(passages: Sequence[Passage], count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """Context lines in rank order, within `budget` tokens: the first line that does not fit is cut
    at a character boundary, and later ones are dropped (the best-ranked passages matter most)."""
    lines: list[str] = []
    used = 0
    for passage in passages:
        line = context_line(passage)
        cost = count_tokens(line) + 1  # + the newline that joins it
        if used + cost <= budget:
            lines.append(line)
            used += cost
            continue
        remaining = budget - used - 1
        if remaining > 8:
            lines.append(_truncate_to_tokens(line, count_tokens, remaining))
        break
    return lines


def _truncate_to_tokens(text: str, count_tokens: Callable[[str], int], budget: int) -> str:
    """Longest prefix of `text` within `budget` tokens (binary search on characters)."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low]


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    text: str
    passages: int
    """How many of the passages, in rank order, the prompt holds."""
    last_cut: bool
    """Whether the last of them is only its beginning (the budget ran out inside it)."""


def fit_prompt(
    question: str, passages: Sequence[Passage], count_tokens: Callable[[str], int], budget: int
) -> FittedPrompt:
    """The prompt of a question and its ranked passages, the passages within `budget` tokens."""
    contexts = fit_contexts(passages, count_tokens, budget)
    last_cut = bool(contexts) and contexts[-1] != context_line(passages[len(contexts) - 1])
    return FittedPrompt(build_prompt(question, contexts), len(contexts), last_cut)


def build_prompt(question: str, contexts: Sequence[str]) -> str:
    return TEMPLATE.format(question=question.strip(), contexts="\n".join(contexts))


def clean_answer(text: str) -> str:
    """The answer as a user reads it: up to the first blank line or `###`, without loops."""
    for stop in ANSWER_STOPS:
        text = text.split(stop, 1)[0]
    return cut_repetition(text).strip()
