"""The unit of retrieval: a passage with its title, and a scored hit."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Passage:
    id: str
    """Stable id; upserts and removals address passages by it."""
    title: str
    """Article title: the prompt writes it before the text, so a chunk keeps its subject."""
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    passage: Passage
    score: float
    """Higher is better; the scale depends on the retrieval mode (cosine, BM25 or fused)."""
