"""Answer and retrieval scores.

Every answer score compares texts after one normalization, `normalize_answer`:

1. Unicode NFKC: full-width digits and letters become half-width (`１９９０` → `1990`, `ＤＮＡ` → `DNA`),
   half-width katakana become full-width, the ideographic space becomes a space.
2. All whitespace is removed (answers are short spans; spaces in them are layout, not content).
3. At the ends: a surrounding 「…」 or 『…』 pair is removed, and so is a stray quote bracket with no
   partner (a trailing 』 the model copied from its passage, a leading 「 it never closed); a final 。
   is removed. This repeats until nothing changes (`「東京」。` → `東京`). Brackets that pair up inside
   the answer stay (`「A」と「B」`).

Case is kept. On normalized texts, for a prediction and the accepted answers ("golds"):

- exact: the prediction equals a gold.
- partial: a gold is contained in the prediction, or a non-empty prediction is contained in a gold.
- char-F1: llm-jp-eval's `char_f1`, max over golds (see `llm_jp_char_f1`).

Retrieval: recall@k (share of gold passage ids found in the top k, a chunk counting as its document)
and reciprocal rank of the first gold.
"""

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from kotae.indexer.chunking import document_id

OPENING_TO_CLOSING = {"「": "」", "『": "』"}
CLOSING_TO_OPENING = {closing: opening for opening, closing in OPENING_TO_CLOSING.items()}
FINAL_PERIOD = "。"
RECALL_KS = (1, 5, 20)
"""Ranks at which retrieval recall is reported; an eval ranks `recall_depth` passages for them."""


def recall_depth(top_k: int) -> int:
    """Passages an eval ranks per question: deep enough for every rank of `RECALL_KS`, and never fewer than
    the `top_k` its prompts hold."""
    return max(RECALL_KS[-1], top_k)


def normalize_answer(text: str) -> str:
    """The one normalization every answer score applies (module docstring)."""
    text = "".join(unicodedata.normalize("NFKC", text).split())
    while True:
        trimmed = _strip_brackets(text).removesuffix(FINAL_PERIOD)
        if trimmed == text:
            return text
        text = trimmed


def _strip_brackets(text: str) -> str:
    if len(text) >= 2 and _pair_encloses_all(text):
        return text[1:-1]
    if text and _stray_at_start(text):
        return text[1:]
    if text and _stray_at_end(text):
        return text[:-1]
    return text


def _pair_encloses_all(text: str) -> bool:
    """Whether the bracket opening `text` is closed by its last character (and not before it)."""
    opening = text[0]
    closing = OPENING_TO_CLOSING.get(opening)
    if closing is None or text[-1] != closing:
        return False
    depth = 0
    for position, char in enumerate(text):
        depth += (char == opening) - (char == closing)
        if depth == 0:
            return position == len(text) - 1
    return False


def _stray_at_start(text: str) -> bool:
    first = text[0]
    if first in CLOSING_TO_OPENING:
        return True
    return first in OPENING_TO_CLOSING and OPENING_TO_CLOSING[first] not in text[1:]


def _stray_at_end(text: str) -> bool:
    last = text[-1]
    if last in OPENING_TO_CLOSING:
        return True
    return last in CLOSING_TO_OPENING and CLOSING_TO_OPENING[last] not in text[:-1]


# -- llm-jp-eval's char_f1 ---------------------------------------------------------------------------

_LATIN1_SUPPLEMENT = dict.fromkeys(range(128, 256))
_NON_WORD = re.compile(r"\W")


def llm_jp_char_f1(prediction: str, gold: str) -> float:
    """llm-jp-eval's `char_f1`, reimplemented without its dependencies.

    llm-jp-eval scores `fuzzywuzzy.fuzz.token_sort_ratio(pred, gold) / 100` with python-Levenshtein
    installed (both are its declared dependencies). That is, on each text: drop the characters
    U+0080–U+00FF (fuzzywuzzy's `force_ascii`; Japanese is untouched), replace every non-word character
    (regex `\\W`, so 、。「」・ too) with a space, lowercase, split on whitespace, sort the tokens and
    join them with one space. Then: equal texts score 1, an empty one 0, otherwise the Levenshtein
    ratio 1 − indel_distance/(len₁+len₂) = 2·LCS/(len₁+len₂), rounded to a whole percent as fuzzywuzzy
    does (Python's round: halves to even). It is not a bag-of-characters F1: character order counts,
    through the longest common subsequence. Checked equal to fuzzywuzzy 0.18 + python-Levenshtein 0.27
    on 200,000 pairs of JSQuAD/JaQuAD answers and perturbations of them.
    """
    left, right = _sorted_tokens(prediction), _sorted_tokens(gold)
    if left == right:
        return 1.0
    if not left or not right:
        return 0.0
    total = len(left) + len(right)
    indel_distance = total - 2 * _lcs_length(left, right)
    # Computed as python-Levenshtein (≥ 0.21, on rapidfuzz) does: 1 - distance/total, whose float error
    # decides the rounding of exact halves (2/80 gives 0.025000000000000022 → 3%, not 2%).
    ratio = 1.0 - indel_distance / total
    return round(100 * ratio) / 100


def _sorted_tokens(text: str) -> str:
    cleaned = _NON_WORD.sub(" ", text.translate(_LATIN1_SUPPLEMENT)).lower()
    return " ".join(sorted(cleaned.split()))


def _lcs_length(left: str, right: str) -> int:
    if len(left) < len(right):
        left, right = right, left
    previous = [0] * (len(right) + 1)
    for char in left:
        current = [0]
        for j, other in enumerate(right):
            current.append(previous[j] + 1 if char == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


# -- per-question scores -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerScore:
    exact: bool
    partial: bool
    char_f1: float


def score_answer(prediction: str, golds: Sequence[str]) -> AnswerScore:
    """Exact, partial and char-F1 of `prediction` against its best-matching gold, all normalized once."""
    predicted = normalize_answer(prediction)
    normalized = [g for g in (normalize_answer(gold) for gold in golds) if g]
    return AnswerScore(
        exact=predicted in normalized,
        partial=bool(predicted) and any(g in predicted or predicted in g for g in normalized),
        char_f1=max((llm_jp_char_f1(predicted, g) for g in normalized), default=0.0),
    )


@dataclass(frozen=True, slots=True)
class RetrievalScore:
    recall: dict[int, float]
    """recall@k for each k in RECALL_KS that the ranking was deep enough to measure."""
    reciprocal_rank: float
    """1/rank of the first gold passage in the ranking; 0 when none was retrieved."""


def golds_found(ranked_ids: Iterable[str], gold_ids: Collection[str]) -> set[str]:
    """The gold ids that these passages find.

    The indexer splits long documents into chunks `id#1`, `id#2`, …, while gold ids name whole
    paragraphs (a third of jawiki-paragraphs is longer than the default 400-character chunk): a chunk
    counts as its document, so `p#2` finds gold `p`."""
    return {gold for pid in ranked_ids for gold in (pid, document_id(pid)) if gold in gold_ids}


def score_retrieval(ranked_ids: Sequence[str], gold_ids: Sequence[str], depth: int) -> RetrievalScore:
    """Scores of one ranking, asked for `depth` passages (an index may hold fewer: then all it has
    were returned, and recall at any k ≤ depth is still measured). A chunk counts as its document
    (`golds_found`)."""
    golds = set(gold_ids)
    recall = {k: len(golds_found(ranked_ids[:k], golds)) / len(golds) for k in RECALL_KS if k <= depth}
    first = next((rank for rank, pid in enumerate(ranked_ids, 1) if golds_found([pid], golds)), None)
    return RetrievalScore(recall, 1 / first if first else 0.0)
