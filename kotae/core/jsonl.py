"""Reading the JSONL files kotae takes (corpora, QA sets, training rows): plain, .gz or .bz2, one JSON object
per line; the first bad line stops the read with `InputError(path, line, reason)`."""

import bz2
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kotae.core.errors import InputError

COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}


class ReadPosition:
    """How far a streamed read has come through its file (in compressed bytes for .gz/.bz2): for progress."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._size = 1
        self._fraction = 0.0

    def follow(self, file: IO[bytes], size: int) -> None:
        """Reports how far through `size` bytes `file` has been read."""
        self._file, self._size = file, max(size, 1)

    def set(self, fraction: float) -> None:
        """For readers that count records rather than bytes."""
        self._fraction = fraction

    @property
    def fraction(self) -> float:
        if self._file is None:
            return self._fraction
        return 1.0 if self._file.closed else min(self._file.tell() / self._size, 1.0)


def open_binary(path: Path, position: ReadPosition | None = None) -> IO[bytes]:
    if not path.is_file():
        raise InputError(path, None, "no such file")
    opener = COMPRESSED.get(path.suffix.lower())
    stream = opener(path, "rb") if opener else path.open("rb")
    if position is not None:
        # A decompressor's own file (BZ2File._fp, GzipFile.fileobj) tells how much input it has read.
        raw = getattr(stream, "_fp", None) or getattr(stream, "fileobj", None) or stream
        position.follow(raw, path.stat().st_size)
    return stream


def read_jsonl(path: Path, position: ReadPosition | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line. `position` follows the read, for progress."""
    line_number = 0
    try:
        with open_binary(path, position) as stream:
            for line_number, raw in enumerate(stream, start=1):
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InputError(path, line_number, f"not valid JSON ({error.msg})") from error
                if not isinstance(record, dict):
                    raise InputError(path, line_number, "expected a JSON object per line")
                yield line_number, record
    except UnicodeDecodeError as error:
        raise InputError(path, line_number, "not UTF-8 text") from error
    except (OSError, EOFError) as error:  # truncated or corrupt .gz/.bz2
        raise InputError(path, line_number + 1, f"cannot read: {error}") from error
