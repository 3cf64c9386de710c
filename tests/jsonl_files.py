"""JSONL files for the tests: corpora, question sets and training examples, as kotae's users write them."""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """`rows` as UTF-8 JSON lines at `path`; returns `path`."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path
