"""Evaluation sets: every supported file format becomes a list of `QAItem`.

Formats, told apart by their content:

- QA JSONL, kotae's and JAQKET/AIO-style (`kotae.core.qa_jsonl`, the reader SFT uses too).
- SQuAD-style JSON as published (`{data: [{title, paragraphs: [{context, qas}]}]}`), one file or a
  directory of `*.json` files (JaQuAD ships 30 train files). The paragraph is the given context; a
  JSQuAD context is `title [SEP] text`. These files carry no ids of the passage corpus, so their items
  have no gold passage ids and retrieval is not scored on them (use the `qa/*.jsonl` conversions).

Bad rows raise `InputError` naming the file and line (JSONL) or the item's place in the JSON tree.
"""

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from kotae.core.errors import InputError
from kotae.core.passage import Passage
from kotae.core.qa_jsonl import QAItem, answers_of, read_qa_jsonl

SQUAD_SEPARATOR = " [SEP] "
"""JSQuAD writes each context as `title [SEP] text`."""


def load_dataset(path: Path, limit: int | None = None) -> list[QAItem]:
    """The first `limit` items (all when None) of a QA file or directory, its format detected."""
    if not path.exists():
        raise InputError(path, None, "no such file or directory")
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise InputError(path, None, "directory holds no *.json (SQuAD-style) files")
        items: Iterator[QAItem] = (item for file in files for item in _squad_items(file))
    elif path.suffix == ".json":
        items = _squad_items(path)
    else:
        items = (item for _, item in read_qa_jsonl(path))
    loaded = list(islice(items, limit))
    if not loaded:
        raise InputError(path, None, "no questions found")
    _reject_duplicate_qids(path, loaded)
    return loaded


def dataset_name(path: Path) -> str:
    """Short name of a dataset for run records and tables: the file or directory name."""
    return path.name


# -- SQuAD-style JSON -------------------------------------------------------------------------------


def _squad_items(path: Path) -> Iterator[QAItem]:
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


def _squad_item(qa: dict[str, Any], passage: Passage, path: Path, where: str) -> QAItem:
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
    answers = answers_of([a.get("text") for a in raw_answers], bad)
    return QAItem(str(qa["id"]), question.strip(), answers, (), (passage,))


def _reject_duplicate_qids(path: Path, items: list[QAItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.qid in seen:
            raise InputError(
                path, None, f"question id {item.qid!r} appears twice; predictions are keyed by it"
            )
        seen.add(item.qid)
