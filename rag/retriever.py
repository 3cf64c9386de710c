"""Question → passages: dense (faiss), lexical (BM25) or both fused, over one opened index."""

from collections.abc import Sequence

from kotae.core.config import FusionMethod, RetrievalMode, Settings
from kotae.core.errors import KotaeError
from kotae.core.passage import Hit
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index, KeyRanking
from kotae.rag.fusion import reciprocal_rank_fusion, weighted_fusion

FUSION_DEPTH = 50
"""Candidates taken from each ranking before fusing (at least top_k): a passage ranked 30th by one
method and 3rd by the other must be in both lists to be fused fairly."""


class Retriever:
    def __init__(
        self, index: Index, embedder: Embedder, settings: Settings, fusion_depth: int = FUSION_DEPTH
    ) -> None:
        """Refuses an embedder other than the one the index was built with, and a lexical default
        retrieval mode on an index without BM25."""
        index.manifest.require_embedder(embedder.name, embedder.hash, index.directory)
        if settings.retrieval != "dense" and not index.has_bm25:
            raise KotaeError(
                f"retrieval mode {settings.retrieval!r} needs BM25, but index {index.directory} was built "
                f"with --no-bm25: set KOTAE_RETRIEVAL=dense or rebuild the index"
            )
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.fusion_depth = fusion_depth

    def describe(self) -> str:
        """The default retrieval as the benchmarks name it: `dense`, `bm25`, `hybrid rrf` or
        `hybrid weighted 0.4` (the dense weight), for run records."""
        mode = self.settings.retrieval
        if mode != "hybrid":
            return mode
        if self.settings.fusion == "rrf":
            return "hybrid rrf"
        return f"hybrid weighted {self.settings.fusion_dense_weight:g}"

    def retrieve(
        self, question: str, top_k: int, mode: RetrievalMode | None = None, fusion: FusionMethod | None = None
    ) -> list[Hit]:
        return self.retrieve_many([question], top_k, mode, fusion)[0]

    def retrieve_many(
        self,
        questions: Sequence[str],
        top_k: int,
        mode: RetrievalMode | None = None,
        fusion: FusionMethod | None = None,
    ) -> list[list[Hit]]:
        """Best first, `top_k` per question. The questions are embedded in one batch. `mode` and
        `fusion` default to the settings."""
        mode = mode or self.settings.retrieval
        if not questions:
            return []
        depth = max(top_k, self.fusion_depth) if mode == "hybrid" else top_k
        view = self.index.view()
        dense = lexical = None
        if mode in ("dense", "hybrid"):
            dense = view.rank_dense(self.embedder.embed_queries(list(questions)), depth)
        if mode in ("bm25", "hybrid"):
            lexical = view.rank_bm25(questions, depth)
        if dense is None or lexical is None:
            return view.hits(dense or lexical)
        # Fused on keys: only the top_k passages of each question are read from the store.
        fused = [self.fuse(d, b, fusion)[:top_k] for d, b in zip(dense, lexical, strict=True)]
        return view.hits(fused)

    def fuse(self, dense: KeyRanking, lexical: KeyRanking, method: FusionMethod | None = None) -> KeyRanking:
        """One question's dense and BM25 rankings as one, by `method` (default: the settings')."""
        method = method or self.settings.fusion
        if method == "rrf":
            return reciprocal_rank_fusion([dense, lexical])
        return weighted_fusion(dense, lexical, dense_weight=self.settings.fusion_dense_weight)
