"""Evaluation sets: every supported file format becomes a list of `EvalItem`.

Formats, told apart by their content:

- kotae QA JSONL, one question per line: `{qid, question, answers, gold_passage_ids?, contexts?}`
  (`../shared/data/qa/*.jsonl`).
- JAQKET/AIO-style JSONL: `{qid?, question, answers, ctxs: [{id?, title, text}, ...]}`; the passages are
  given with the question. Both JSONL kinds are read by one parser: `ctxs` is `contexts` by another name.
- SQuAD-style JSON as published (`{data: [{title, paragraphs: [{context, qas}]}]}`), one file or a
  directory of `*.json` files (JaQuAD ships 30 train files). The paragraph is the given context; a
  JSQuAD context is `title [SEP] text`. These files carry no ids of the passage corpus, so their items
  have no gold passage ids and retrieval is not scored on them (use the `qa/*.jsonl` conversions).

Bad rows raise `InputError` naming the file and line (JSONL) or the item's place in the JSON tree.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from kotae.core.errors import InputError
from kotae.core.jsonl import read_jsonl
from kotae.core.passage import Passage

SQUAD_SEPARATOR = " [SEP] "
"""JSQuAD writes each context as `title [SEP] text`."""


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One question with its accepted answers, whatever file it came from."""

    qid: str
    question: str
    answers: tuple[str, ...]
    """Accepted answers (at least one); a prediction is scored against the best-matching one."""
    gold_passage_ids: tuple[str, ...] = ()
    """Ids in the passage corpus that hold the answer; empty when unknown (then retrieval is not scored)."""
    contexts: tuple[Passage, ...] | None = None
    """Passages that come with the question (`--contexts given`); None when the file has none."""


def load_dataset(path: Path, limit: int | None = None) -> list[EvalItem]:
    """The first `limit` items (all when None) of a QA file or directory, its format detected."""
    if not path.exists():
        raise InputError(path, None, "no such file or directory")
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise InputError(path, None, "directory holds no *.json (SQuAD-style) files")
        items: Iterator[EvalItem] = (item for file in files for item in _squad_items(file))
    elif path.suffix == ".json":
        items = _squad_items(path)
    else:
        items = _jsonl_items(path)
    loaded = list(islice(items, limit))
    if not loaded:
        raise InputError(path, None, "no questions found")
    _reject_duplicate_qids(path, loaded)
    return loaded


def dataset_name(path: Path) -> str:
    """Short name of a dataset for run records and tables: the file or directory name."""
    return path.name


# -- JSONL: kotae QA and JAQKET/AIO ---------------------------------------------------------------


def _jsonl_items(path: Path) -> Iterator[EvalItem]:
    for number, row in read_jsonl(path):
        yield _jsonl_item(row, path, number)


def _jsonl_item(row: dict[str, Any], path: Path, line: int) -> EvalItem:
    def bad(reason: str) -> InputError:
        return InputError(path, line, reason)

    qid = row.get("qid", f"line{line}")
    if not isinstance(qid, str | int) or isinstance(qid, bool):
        raise bad("`qid` must be a string")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("`question` must be a non-empty string")
    answers = _answers(row.get("answers"), bad)
    golds = row.get("gold_passage_ids", [])
    if not isinstance(golds, list) or not all(isinstance(g, str) and g for g in golds):
        raise bad("`gold_passage_ids` must be a list of passage id strings")
    if "contexts" in row and "ctxs" in row:
        raise bad("give passages as `contexts` or `ctxs`, not both")
    raw_contexts = row.get("contexts", row.get("ctxs"))
    contexts = None if raw_contexts is None else _contexts(raw_contexts, str(qid), bad)
    return EvalItem(str(qid), question.strip(), answers, tuple(golds), contexts)


def _answers(value: object, bad: Callable[[str], InputError]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise bad("`answers` must be a non-empty list of strings")
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


# -- SQuAD-style JSON -------------------------------------------------------------------------------


def _squad_items(path: Path) -> Iterator[EvalItem]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(path, error.lineno, f"not valid JSON ({error.msg})") from error
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise InputError(path, None, "not a SQuAD-style file: expected an object with a `data` list")
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(_list(article, "paragraphs", path, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                raise InputError(path, None, f"{where}: `context` must be a non-empty string")
            passage = _squad_passage(context, article.get("title") or "", f"{path.stem}:{a}:{p}")
            for q, qa in enumerate(_list(paragraph, "qas", path, where)):
                if qa.get("is_impossible"):
                    continue  # SQuAD 2.0 unanswerable questions have no answer to score
                yield _squad_item(qa, passage, path, f"{where}.qas[{q}]")


def _list(parent: object, key: str, path: Path, where: str) -> list[dict[str, Any]]:
    value = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(path, None, f"{where}: `{key}` must be a list of objects")
    return value


def _squad_passage(context: str, article_title: str, passage_id: str) -> Passage:
    title, separator, text = context.partition(SQUAD_SEPARATOR)
    if separator:
        return Passage(passage_id, title.strip(), text.strip())
    return Passage(passage_id, article_title, context.strip())


def _squad_item(qa: dict[str, Any], passage: Passage, path: Path, where: str) -> EvalItem:
    def bad(reason: str) -> InputError:
        return InputError(path, None, f"{where}: {reason}")

    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("`question` must be a non-empty string")
    if "id" not in qa:
        raise bad("`id` is missing")
    raw_answers = qa.get("answers")
    if not isinstance(raw_answers, list) or not all(isinstance(a, dict) for a in raw_answers):
        raise bad("`answers` must be a list of objects with `text`")
    answers = _answers([a.get("text") for a in raw_answers], bad)
    return EvalItem(str(qa["id"]), question.strip(), answers, (), (passage,))


def _reject_duplicate_qids(path: Path, items: list[EvalItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.qid in seen:
            raise InputError(
                path, None, f"question id {item.qid!r} appears twice; predictions are keyed by it"
            )
        seen.add(item.qid)
