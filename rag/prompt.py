"""The 指示/入力/応答 prompt, exactly as the seeds and llm-jp-eval write it.

Training (kotae.adapters) and serving both build prompts here, so an adapter sees at serve time the
bytes it was trained on.
"""

from collections.abc import Callable, Sequence

from kotae.rag.passage import Passage

PROMPT_VERSION = "alpaca-ja-v1"
"""Recorded in adapter metadata; bump when the template changes."""

PREAMBLE = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)
TEMPLATE = PREAMBLE + "\n\n### 指示:\n{question}\n\n### 入力:\n{contexts}\n\n### 応答:\n"

ANSWER_STOPS = ("\n\n", "###")
"""An answer ends at a blank line or at the next section header."""


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


def build_prompt(question: str, contexts: Sequence[str]) -> str:
    return TEMPLATE.format(question=question.strip(), contexts="\n".join(contexts))


def clean_answer(text: str) -> str:
    """The answer as a user reads it: up to the first blank line or `###`, without loops."""
    for stop in ANSWER_STOPS:
        text = text.split(stop, 1)[0]
    return cut_repetition(text).strip()


def guard_stream(generated: str, sent: str) -> tuple[str, bool]:
    """The loop guard on a stream: what of the answer may be out by now, and whether it started looping.
    `generated` is the whole text so far, `sent` what went out already: it cannot be taken back, so a
    cut never goes below it."""
    guarded = cut_repetition(generated)
    looping = len(guarded) < len(generated)
    return (sent if looping and len(guarded) < len(sent) else guarded), looping


def cut_repetition(text: str, min_repeats: int = 3, min_span: int = 8, max_period: int = 80) -> str:
    """Cut a looping tail down to its first occurrence.

    A small base model often repeats a phrase until `max_tokens` ("東京都、東京都、東京都、…").
    If the text ends with `min_repeats` or more back-to-back copies of one unit (possibly followed by
    an unfinished copy) spanning at least `min_span` characters, everything after the first copy goes.
    Units longer than `max_period` characters are not looked for: this runs at every streamed token.
    """
    n = len(text)
    for period in range(1, min(n // min_repeats, max_period) + 1):
        # The tail may stop inside a copy: try each partial remainder.
        for partial in range(period):
            end = n - partial
            if text[end:] != text[end - period : end - period + partial]:
                continue
            unit = text[end - period : end]
            copies = 1
            while (
                end - (copies + 1) * period >= 0
                and text[end - (copies + 1) * period : end - copies * period] == unit
            ):
                copies += 1
            if copies >= min_repeats and copies * period >= min_span:
                start = end - copies * period
                # The loop may have begun a few characters earlier, in a rotated unit.
                while start > 0 and text[start - 1] == text[start - 1 + period]:
                    start -= 1
                return text[: start + period]
    return text
