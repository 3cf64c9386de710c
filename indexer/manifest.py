"""`manifest.json`: what an index holds and how it was made, so that it is served the way it was built."""

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from kotae.core.errors import InputError, KotaeError
from kotae.indexer.bm25 import Bm25Params
from kotae.indexer.dense import DenseSpec
from kotae.indexer.layout import MANIFEST_FILE
from kotae.indexer.sources import SourceFormat
from kotae.indexer.tokenizer import TokenizerSettings

FORMAT_VERSION = 2


class EmbedderInfo(BaseModel):
    name: str
    hash: str
    """Identity of the weights: queries must be embedded by the very model that embedded the passages."""
    dimension: int
    passage_prompt: str | None
    query_prompt: str | None


class SourceInfo(BaseModel):
    path: str
    format: SourceFormat
    documents: int
    passages: int
    added_at: datetime


class Bm25Info(BaseModel):
    tokenizer: TokenizerSettings
    params: Bm25Params


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    kotae_version: str
    embedder: EmbedderInfo
    count: int
    """Passages in the index (the same in faiss, the store and BM25)."""
    documents: int
    chunk_chars: int
    """Passage length limit used when chunking; updates chunk new documents the same way."""
    dense: DenseSpec
    bm25: Bm25Info | None
    """None when built with --no-bm25."""
    sources: list[SourceInfo]
    """Files built from, then files added by updates, in order."""
    built_at: datetime
    updated_at: datetime
    build_seconds: float
    build_stages: dict[str, float] = {}
    """Seconds of each stage of the build that made it (shards: read, clean, embed and store; faiss and
    bm25 run side by side after it)."""

    def require_embedder(self, name: str, weights_hash: str, index_dir: Path) -> None:
        """Refuses to pair this index with another embedder: its vectors would not be comparable."""
        built_with = self.embedder
        if (name, weights_hash) != (built_with.name, built_with.hash):
            raise KotaeError(
                f"index {index_dir} was built with embedder {built_with.name} (hash {built_with.hash[:12]}) "
                f"but kotae is configured with {name} (hash {weights_hash[:12]}): set KOTAE_EMBEDDER to the "
                f"index's embedder or rebuild the index"
            )


def read_manifest(index_dir: Path) -> Manifest:
    if not index_dir.is_dir():
        raise KotaeError(
            f"index {index_dir} not found: build it with `kotae index build SOURCE --out {index_dir}`"
        )
    path = index_dir / MANIFEST_FILE
    if not path.is_file():
        raise InputError(path, None, "manifest missing: not a kotae index, or an incomplete one; rebuild it")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise InputError(path, None, f"manifest unreadable: {error.errors()[0]['msg']}") from error
    if manifest.format_version != FORMAT_VERSION:
        raise InputError(
            path,
            None,
            f"index format {manifest.format_version}, this kotae reads {FORMAT_VERSION}: rebuild it",
        )
    return manifest


def write_manifest(index_dir: Path, manifest: Manifest) -> None:
    (index_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
