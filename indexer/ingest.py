"""Sources → passages added to an existing store (chunked, BM25-tokenized), replacing documents by id."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from kotae.core.errors import KotaeError
from kotae.indexer.manifest import SourceInfo
from kotae.indexer.shards import prepare_documents
from kotae.indexer.sources import detect_format, read_records
from kotae.indexer.store import PassageStore
from kotae.indexer.tokenizer import SudachiTokenizer


@dataclass
class Ingested:
    sources: list[SourceInfo] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    """Keys of the new passages."""
    replaced: list[int] = field(default_factory=list)
    """Keys of passages dropped because their document came again (upsert)."""


def ingest(
    sources: Sequence[Path],
    store: PassageStore,
    chunk_chars: int,
    tokenizer: SudachiTokenizer | None,
    progress: bool = False,
) -> Ingested:
    """Adds every document of `sources` to `store`. A document whose id is already stored replaces all of
    that document's passages; the same id twice among `sources` is an error (which one was meant?)."""
    result = Ingested()
    seen: dict[str, str] = {}
    replacing = store.count() > 0
    for path in sources:
        source_format = detect_format(path)
        documents = passages = 0
        for record in tqdm(
            read_records(path), desc=f"reading {path.name}", unit=" docs", disable=not progress
        ):
            if record.id in seen:
                raise KotaeError(
                    f"{record.origin}: document id {record.id!r} already came from {seen[record.id]}"
                )
            seen[record.id] = record.origin
            [document] = prepare_documents([record], chunk_chars, tokenizer)
            if replacing:  # even by nothing: a document that lost all its text loses its passages
                old = store.keys_of_documents([document.id])
                store.delete(old)
                result.replaced.extend(old)
            if not document.passages:  # nothing left after cleaning (e.g. an article that is all tables)
                continue
            try:
                result.added.extend(store.insert(document.id, document.passages, document.tokens))
            except KeyError as error:
                raise KotaeError(
                    f"{document.origin}: passage id {error.args[0]!r} is already taken by another document"
                ) from error
            documents += 1
            passages += len(document.passages)
        result.sources.append(
            SourceInfo(
                path=str(path.resolve()),
                format=source_format,
                documents=documents,
                passages=passages,
                added_at=datetime.now(UTC),
            )
        )
    if not result.added:
        raise KotaeError(f"no passages in {', '.join(map(str, sources))}: the corpus is empty")
    return result
