"""QA JSONL, one question per line, as the evals and SFT example building read it.

- kotae QA: `{qid?, question, answers, gold_passage_ids?, contexts?, answerable?}`
  (`../shared/data/qa/*.jsonl`). An unanswerable question (SQuAD 2.0's NoAns) says `answerable: false`
  and has no answers; its `gold_passage_ids`, if any, name the passages whose article is taken out of
  retrieval when it is asked (`benchmarks/noans_set.py` writes such questions).
- JAQKET/AIO-style: `{qid?, question, answers, ctxs: [{id?, title, text}, ...]}`; the passages are given
  with the question. `ctxs` is `contexts` by another name.

Bad rows raise `InputError` naming the file and line.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotae.core.errors import InputError
from kotae.core.jsonl import read_jsonl
from kotae.core.passage import Passage


@dataclass(frozen=True, slots=True)
class QAItem:
    """One question with its accepted answers, whatever file it came from."""

    qid: str
    question: str
    answers: tuple[str, ...]
    """Accepted answers (at least one when answerable); a prediction is scored against the best-matching
    one."""
    gold_passage_ids: tuple[str, ...] = ()
    """Ids in the passage corpus that hold the answer; empty when unknown (then retrieval is not scored)."""
    contexts: tuple[Passage, ...] | None = None
    """Passages that come with the question (`--contexts given`); None when the file has none."""
    answerable: bool = True
    """False: the answer is not in the passages (nor, asked by retrieval, in the index without the article
    of `gold_passage_ids`); the right reply is to abstain."""


def read_qa_jsonl(path: Path) -> Iterator[tuple[int, QAItem]]:
    """(line number, item) for every non-blank line; `InputError(path, line, reason)` on the first bad one."""
    for number, row in read_jsonl(path):
        yield number, _jsonl_item(row, path, number)


def _jsonl_item(row: dict[str, Any], path: Path, line: int) -> QAItem:
    def bad(reason: str) -> InputError:
        return InputError(path, line, reason)

    qid = row.get("qid", f"line{line}")
    if not isinstance(qid, str | int) or isinstance(qid, bool):
        raise bad("`qid` must be a string")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("`question` must be a non-empty string")
    answerable = row.get("answerable", True)
    if not isinstance(answerable, bool):
        raise bad("`answerable` must be true or false")
    if answerable:
        answers = answers_of(row.get("answers"), bad)
    elif row.get("answers", []) != []:
        raise bad("an unanswerable question (`answerable: false`) must have no `answers`")
    else:
        answers = ()
    golds = row.get("gold_passage_ids", [])
    if not isinstance(golds, list) or not all(isinstance(g, str) and g for g in golds):
        raise bad("`gold_passage_ids` must be a list of passage id strings")
    if "contexts" in row and "ctxs" in row:
        raise bad("give passages as `contexts` or `ctxs`, not both")
    raw_contexts = row.get("contexts", row.get("ctxs"))
    contexts = None if raw_contexts is None else _contexts(raw_contexts, str(qid), bad)
    return QAItem(str(qid), question.strip(), answers, tuple(golds), contexts, answerable)


def answers_of(value: object, bad: Callable[[str], InputError]) -> tuple[str, ...]:
    """A non-empty list of non-empty answer strings, stripped, each kept once; `bad(reason)` otherwise."""
    if not isinstance(value, list) or not value:
        raise bad("`answers` must be a non-empty list of strings (or say `answerable: false`)")
    if not all(isinstance(a, str) and a.strip() for a in value):
        raise bad("every answer must be a non-empty string")
    return tuple(dict.fromkeys(a.strip() for a in value))


def _contexts(value: object, qid: str, bad: Callable[[str], InputError]) -> tuple[Passage, ...]:
    """`contexts`/`ctxs`: objects `{id?, title?, text}` or plain strings, in rank order."""
    if not isinstance(value, list):
        raise bad("`contexts`/`ctxs` must be a list")
    passages = []
    for rank, context in enumerate(value):
        fallback_id = f"{qid}#ctx{rank}"
        if isinstance(context, str):
            passages.append(Passage(fallback_id, "", context))
            continue
        if not isinstance(context, dict) or not isinstance(context.get("text"), str):
            raise bad(f"context {rank} must be a string or an object with a `text` string")
        title = context.get("title") or ""
        if not isinstance(title, str):
            raise bad(f"context {rank}: `title` must be a string")
        passages.append(Passage(str(context.get("id") or fallback_id), title, context["text"]))
    return tuple(passages)
