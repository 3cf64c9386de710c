"""Input files → records → documents: passage JSONL or Parquet, wikitext JSONL or Parquet, and MediaWiki XML
dumps (plain, .gz or .bz2; a multistream .bz2 is also read stream by stream, in parallel)."""

import bz2
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kotae.core.errors import InputError
from kotae.core.jsonl import COMPRESSED, ReadPosition, open_binary, read_jsonl
from kotae.indexer.chunking import Document
from kotae.indexer.mediawiki import iter_articles, iter_pages_of_streams
from kotae.indexer.wikitext import wikitext_to_sections

SourceFormat = Literal["passages", "wikitext", "mediawiki-xml"]
_JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
_PARQUET_SUFFIX = ".parquet"
# Where every bz2 stream starts: "BZh", the block size digit, then the first block's magic (π's digits).
_BZ2_STREAM_START = re.compile(rb"BZh[1-9]1AY&SY")
_PARQUET_BATCH_ROWS = 4096


@dataclass(frozen=True, slots=True)
class Record:
    """One source record before cleaning and chunking: a passage row, or an article's wikitext."""

    id: str
    title: str
    text: str
    wikitext: bool
    """The text is MediaWiki markup, cleaned into sections by `to_document`."""
    origin: str
    """Where it came from (`file:line`, `file:row N`, or `file (title)`), for error messages."""


def detect_format(path: Path) -> SourceFormat:
    """By extension (after any .gz/.bz2): .xml is a dump; JSONL and Parquet are told apart by their first
    record's keys."""
    suffix = _inner_suffix(path)
    if suffix == ".xml":
        return "mediawiki-xml"
    if suffix == _PARQUET_SUFFIX:
        return _parquet_format(path)
    try:
        with open_binary(path) as stream:
            head = stream.read(1024).lstrip()
    except (OSError, EOFError) as error:
        raise InputError(path, None, f"cannot read: {error}") from error
    if suffix not in _JSONL_SUFFIXES and head.startswith(b"<"):
        return "mediawiki-xml"
    if suffix not in _JSONL_SUFFIXES and not head.startswith(b"{"):
        raise InputError(
            path, None, "unknown format: expected .jsonl/.json, .parquet or .xml (optionally .gz or .bz2)"
        )
    for line_number, record in read_jsonl(path):
        return _record_format(record.keys(), path, line_number)
    raise InputError(path, None, "the file holds no records")


def read_documents(path: Path) -> Iterator[Document]:
    """Documents of one file, streamed; malformed records raise InputError naming the file and record."""
    return map(to_document, read_records(path))


def read_records(path: Path, position: ReadPosition | None = None) -> Iterator[Record]:
    """Records of one file, streamed, not yet cleaned: the cheap part of reading, which stays in one process
    while cleaning and chunking (`to_document`) run in many. `position` follows the read, for progress."""
    source_format = detect_format(path)
    if source_format == "mediawiki-xml":
        yield from _xml_records(path, position)
    elif _inner_suffix(path) == _PARQUET_SUFFIX:
        yield from _parquet_records(path, source_format, position or ReadPosition())
    else:
        yield from _jsonl_records(path, source_format, position)


def to_document(record: Record) -> Document:
    """A record as a document: wikitext is cleaned into prose sections, a passage row is one section."""
    if not record.wikitext:
        return Document(record.id, record.title, (record.text,), record.origin)
    sections = tuple(section.text for section in wikitext_to_sections(record.text))
    return Document(id=record.id, title=record.title, sections=sections, origin=record.origin)


def bz2_streams(path: Path) -> list[int] | None:
    """Byte offsets where the bz2 streams of a multistream `.xml.bz2` dump start, and the file's size last;
    None for any other file. Wikipedia's `pages-articles-multistream` dumps are such files: each stream holds
    whole pages, so streams can be read independently (`read_stream_records`)."""
    if path.suffix.lower() != ".bz2" or _inner_suffix(path) != ".xml" or not path.is_file():
        return None
    size = path.stat().st_size
    if size == 0:
        return None
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        starts = [match.start() for match in _BZ2_STREAM_START.finditer(data)]
    if len(starts) < 2 or starts[0] != 0:
        return None
    return [*starts, size]


def read_stream_records(path: Path, start: int, end: int) -> Iterator[Record]:
    """The article records of the bz2 streams in bytes [start, end) of a multistream dump."""
    with path.open("rb") as file:
        file.seek(start)
        compressed = file.read(end - start)
    try:
        xml = bz2.decompress(compressed)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(path, None, f"bz2 streams at bytes {start}-{end} unreadable: {error}") from error
    origin = f"{path} (bytes {start}-{end})"
    for page in iter_pages_of_streams(xml, path, origin):
        yield Record(page.title, page.title, page.wikitext, True, f"{path} ({page.title})")


def _xml_records(path: Path, position: ReadPosition | None) -> Iterator[Record]:
    try:
        with open_binary(path, position) as stream:
            for page in iter_articles(stream, path):
                yield Record(page.title, page.title, page.wikitext, True, f"{path} ({page.title})")
    except (OSError, EOFError) as error:  # truncated or corrupt .bz2/.gz
        raise InputError(path, None, f"cannot read: {error}") from error


def _jsonl_records(
    path: Path, source_format: SourceFormat, position: ReadPosition | None
) -> Iterator[Record]:
    for line_number, record in read_jsonl(path, position):
        yield _record(record, source_format, path, f"{path}:{line_number}", line_number)


def _parquet_records(path: Path, source_format: SourceFormat, position: ReadPosition) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        parquet = pq.ParquetFile(path)
        columns = [c for c in ("id", "title", "text") if c in parquet.schema_arrow.names]
        rows = max(parquet.metadata.num_rows, 1)
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
            for values in batch.to_pylist():
                row += 1
                yield _record(values, source_format, path, f"{path}:row {row}", row)
            position.set(row / rows)
    except (pa.ArrowException, OSError) as error:
        raise InputError(path, row + 1 if row else None, f"cannot read Parquet: {error}") from error


def _parquet_format(path: Path) -> SourceFormat:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except FileNotFoundError as error:
        raise InputError(path, None, "no such file") from error
    except (pa.ArrowException, OSError) as error:
        raise InputError(path, None, f"not a readable Parquet file ({error})") from error
    return _record_format(names, path, None)


def _record(
    values: dict[str, Any], source_format: SourceFormat, path: Path, origin: str, number: int
) -> Record:
    record_format = _record_format(values.keys(), path, number)
    if record_format != source_format:
        raise InputError(path, number, f"a {record_format} record in a file of {source_format} records")
    title = _text_field(values, "title", path, number)
    text = _text_field(values, "text", path, number)
    if source_format == "passages":
        return Record(_id_field(values, path, number), title, text, False, origin)
    return Record(title, title, text, True, origin)


def _record_format(keys: Any, path: Path, number: int | None) -> SourceFormat:
    keys = set(keys)
    if {"id", "title", "text"} <= keys:
        return "passages"
    if {"title", "text"} <= keys:
        return "wikitext"
    raise InputError(
        path,
        number,
        f"record has keys {sorted(keys)}: expected {{id, title, text}} (passages) "
        "or {title, text} (wikitext)",
    )


def _text_field(record: dict[str, Any], key: str, path: Path, number: int) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise InputError(path, number, f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _id_field(record: dict[str, Any], path: Path, number: int) -> str:
    value = record["id"]
    # Integer ids are common in exported data; booleans are ints in Python but never meant as ids.
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise InputError(path, number, f"field 'id' must be a non-empty string or integer, got {value!r}")
    return str(value)


def _inner_suffix(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""
