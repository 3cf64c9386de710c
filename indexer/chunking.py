"""Documents → passages of about `max_chars` characters, cut at sentence ends, each keeping its title."""

import re
from dataclasses import dataclass

from kotae.core.passage import Passage

DEFAULT_CHUNK_CHARS = 400
# A sentence runs to 。！？ (with any closing quotes or brackets right after it) or to the end of its line;
# it keeps its newline so that packed chunks keep their paragraph breaks.
_SENTENCE = re.compile(r"[^。！？\n]*(?:[。！？]+[」』）〕】)]*)?\n?")
CHUNK_ID_SEPARATOR = "#"


@dataclass(frozen=True, slots=True)
class Document:
    """One source record (a passage row, an article) before chunking."""

    id: str
    """Stable id: the record's id, or the article title for wikitext; chunk ids derive from it."""
    title: str
    sections: tuple[str, ...]
    """Prose blocks a chunk never crosses (wiki sections); a plain passage has one."""
    origin: str
    """Where it came from (`file:line`, or `file (title)` in an XML dump), for error messages."""


def split_sentences(text: str) -> list[str]:
    """Sentences with their end marks; a newline ends one too. Blank pieces are left out."""
    return [piece for piece in _SENTENCE.findall(text) if piece.strip()]


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Whole sentences packed greedily up to `max_chars`; a longer sentence is cut every `max_chars`."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        if len(current) + len(sentence.strip()) > max_chars and current.strip():
            chunks.append(current.strip())
            current = ""
        if len(sentence.strip()) > max_chars:
            sentence = sentence.strip()
            pieces = [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]
            chunks.extend(pieces[:-1])
            current = pieces[-1]
        else:
            current += sentence
    if current.strip():
        chunks.append(current.strip())
    return chunks


def chunk_document(document: Document, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[Passage]:
    """Passages of one document. A single chunk keeps the document id; several get `id#1`, `id#2`, …"""
    texts = [chunk for section in document.sections for chunk in chunk_text(section, max_chars)]
    return [
        Passage(id=chunk_id(document.id, number, len(texts)), title=document.title, text=text)
        for number, text in enumerate(texts, start=1)
    ]


def chunk_id(document_id: str, number: int, total: int) -> str:
    return document_id if total == 1 else f"{document_id}{CHUNK_ID_SEPARATOR}{number}"


def document_id(passage_id: str) -> str:
    """The document a chunk id (`doc#3`) was cut from; other ids are their own document."""
    document, separator, number = passage_id.rpartition(CHUNK_ID_SEPARATOR)
    return document if separator and number.isdigit() else passage_id


def indexed_text(passage: Passage) -> str:
    """What the embedder and BM25 see: the title leads, so a chunk that never names its subject still
    matches questions about it."""
    return f"{passage.title}\n{passage.text}"
