"""The JSONL files training reads, row by row (QA files through `kotae.core.qa_jsonl`): a bad row stops the
run with its file and line."""

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError

from kotae.core.errors import InputError
from kotae.core.jsonl import read_jsonl

NonEmpty = Field(min_length=1)


class PassageRow(BaseModel):
    """A passage of `jawiki-paragraphs.jsonl`, the CPT text."""

    id: str | None = None
    title: str = ""
    text: str = NonEmpty


class ExampleRow(BaseModel):
    """A built SFT example: the exact prompt and the completion trained on it."""

    prompt: str = NonEmpty
    completion: str = NonEmpty
    question: str
    answers: list[str]
    qid: str | None = None
    passage_ids: list[str] = []
    """The passages in the prompt, in prompt order (the gold one among them)."""


Row = TypeVar("Row", bound=BaseModel)


def read_rows(path: Path, schema: type[Row]) -> Iterator[tuple[int, Row]]:
    """(line number, row) for every non-blank line; `InputError(path, line, reason)` on the first bad one."""
    for number, record in read_jsonl(path):
        try:
            yield number, schema.model_validate(record)
        except ValidationError as error:
            raise InputError(path, number, _describe(error)) from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "row"
    return f"{field}: {first['msg']}"
