"""Question → passages: dense (faiss), lexical (BM25) or both fused, over one opened index."""

from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from kotae.core.config import FusionMethod, RetrievalMode, Settings
from kotae.core.errors import KotaeError
from kotae.core.passage import Hit
from kotae.indexer.dense import search_team
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index, IndexView, KeyRanking
from kotae.indexer.thread_pools import shared_pool
from kotae.rag.fusion import reciprocal_rank_fusion, weighted_fusion
from kotae.rag.reranker import PairScorer
from kotae.rag.stage_times import StageTimes

FUSION_DEPTH = 50
"""Candidates taken from each ranking before fusing (at least top_k): a passage ranked 30th by one
method and 3rd by the other must be in both lists to be fused fairly."""

EXCLUSION_DEPTH = 200
"""Extra passages ranked per question when titles are excluded, so that enough others remain (the largest
article of jawiki-paragraphs has 180 paragraphs)."""


LEXICAL_THREADS = 4
"""Batches whose BM25 half runs beside their dense half at once; BM25 spreads each over its own threads."""


def _lexical_pool() -> ThreadPoolExecutor:
    return shared_pool("lexical-retrieval", LEXICAL_THREADS)


@dataclass(frozen=True, slots=True)
class Retrieval:
    """One question's passages, and how close the collection came to it."""

    hits: list[Hit]
    """Best first."""
    best_cosine: float | None
    """The highest dense cosine similarity of the question to any passage searched (the abstention
    gate's signal); None when the dense index was not searched (BM25 with the gate off)."""
    ranked_ids: list[str] | None = None
    """The ids of the ranking's first `ranked_depth` passages when `search_many` was asked for them, best
    first; beyond the hits they were not read."""


class Retriever:
    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        settings: Settings,
        fusion_depth: int = FUSION_DEPTH,
        reranker: PairScorer | None = None,
    ) -> None:
        """Refuses an embedder other than the one the index was built with, and a lexical default
        retrieval mode on an index without BM25. `reranker` re-orders hybrid retrieval's fused top
        `settings.rerank_depth` (`rerank`); dense and BM25 rankings are returned as they are."""
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
        self.reranker = reranker

    def describe(self) -> str:
        """The default retrieval as the benchmarks name it: `dense`, `bm25`, `hybrid rrf` or
        `hybrid weighted 0.4` (the dense weight), with ` reranked top 50` after a hybrid one when a
        reranker re-orders it, for run records."""
        mode = self.settings.retrieval
        if mode != "hybrid":
            return mode
        if self.settings.fusion == "rrf":
            fused = "hybrid rrf"
        else:
            fused = f"hybrid weighted {self.settings.fusion_dense_weight:g}"
        return fused if self.reranker is None else f"{fused} reranked top {self.settings.rerank_depth}"

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
        return [found.hits for found in self.search_many(questions, top_k, mode, fusion)]

    def search_many(
        self,
        questions: Sequence[str],
        top_k: int,
        mode: RetrievalMode | None = None,
        fusion: FusionMethod | None = None,
        excluded_titles: Sequence[Collection[str]] | None = None,
        times: StageTimes | None = None,
        query_vectors: np.ndarray | None = None,
        ranked_depth: int = 0,
    ) -> list[Retrieval]:
        """`retrieve_many` with each question's best cosine, searched even in BM25 mode when the
        abstention gate is on. `excluded_titles`, one collection per question: passages of those titles
        are searched as if they were not in the index (a question asked without its gold article).
        Each stage is one call for the whole batch (the query embeddings, faiss, Sudachi, BM25, the
        passages' read), timed into `times` when given: `embed`, `dense`, `tokenize`, `bm25`, `fuse`,
        `read`, and `rerank` with a reranker. In hybrid mode the BM25 half (`tokenize`, `bm25`) runs in a
        thread beside the dense half (`embed`, `dense`), so their times overlap; with a reranker the fused
        top `rerank_depth` are read and re-ordered before the top `top_k` are kept. `query_vectors`: the
        questions' `embedder.embed_queries`, when the caller embedded them beforehand. `ranked_depth`: each
        retrieval's `ranked_ids` names the first that many passages of the ranking, of which only the hits
        are read (recall is measured deeper than a prompt reaches)."""
        mode = mode or self.settings.retrieval
        if not questions:
            return []
        if query_vectors is not None and len(query_vectors) != len(questions):
            raise ValueError(f"{len(query_vectors)} query vectors for {len(questions)} questions")
        reranking = self.reranker is not None and mode == "hybrid"
        kept = max(top_k, self.settings.rerank_depth) if reranking else top_k
        depth = max(kept, ranked_depth, self.fusion_depth if mode == "hybrid" else 0)
        if excluded_titles is not None:
            depth += EXCLUSION_DEPTH
        view = self.index.view()
        clock = times or StageTimes()

        def rank_lexically() -> list[KeyRanking]:
            with clock.stage("tokenize"):
                words = view.query_words(questions)
            with clock.stage("bm25"):
                ranked = view.rank_words(words, depth)
                return ranked if excluded_titles is None else _without_titles(view, ranked, excluded_titles)

        dense: list[KeyRanking] | None = None
        lexical: list[KeyRanking] | None = None
        if self.embeds_questions(mode):
            # BM25 runs on the CPU while the questions are embedded and searched densely: a question
            # waits for the slower of the two, not for both.
            pending = _lexical_pool().submit(rank_lexically) if mode != "dense" else None
            vectors = query_vectors
            if vectors is None:
                with clock.stage("embed"):
                    vectors = self.embedder.embed_queries(list(questions))
            with clock.stage("dense"), search_team(self.settings.search_threads):
                dense = view.rank_dense(vectors, depth)
                if excluded_titles is not None:
                    dense = _without_titles(view, dense, excluded_titles)
            lexical = pending.result() if pending is not None else None
        else:
            lexical = rank_lexically()
        with clock.stage("fuse"):
            if dense is not None and lexical is not None and mode == "hybrid":
                # Fused on keys: only the top_k passages of each question are read from the store.
                ranked = [self.fuse(d, b, fusion) for d, b in zip(dense, lexical, strict=True)]
            else:
                chosen = lexical if mode == "bm25" else dense
                assert chosen is not None
                ranked = chosen
        with clock.stage("read"):
            hit_lists = view.hits([ranking[:kept] for ranking in ranked])
            unread_ids = view.passage_ids([ranking[kept:ranked_depth] for ranking in ranked])
        if reranking:
            with clock.stage("rerank"):
                hit_lists = self.rerank(questions, hit_lists)
        ranked_ids = [
            ([hit.passage.id for hit in hits] + unread)[:ranked_depth] if ranked_depth else None
            for hits, unread in zip(hit_lists, unread_ids, strict=True)
        ]
        best = [ranking[0][1] if ranking else None for ranking in dense] if dense else [None] * len(questions)
        return [
            Retrieval(hits[:top_k], cosine, ids)
            for hits, cosine, ids in zip(hit_lists, best, ranked_ids, strict=True)
        ]

    def embeds_questions(self, mode: RetrievalMode | None = None) -> bool:
        """Whether `search_many` embeds the questions in `mode` (default: the settings'): to search
        densely, or for the best cosine the abstention gate reads."""
        return (mode or self.settings.retrieval) != "bm25" or self.settings.abstain_min_cosine > 0

    def rerank(
        self, questions: Sequence[str], hit_lists: Sequence[list[Hit]], depth: int | None = None
    ) -> list[list[Hit]]:
        """Each question's first `depth` (default: `rerank_depth`) hits re-ordered by the reranker's
        scores (which become their scores), best first; hits beyond them follow as they were. All pairs of
        the batch are scored in one call. Without a reranker, the hits as they were."""
        if self.reranker is None:
            return [list(hits) for hits in hit_lists]
        depth = depth or self.settings.rerank_depth
        pairs = [
            (question, hit.passage)
            for question, hits in zip(questions, hit_lists, strict=True)
            for hit in hits[:depth]
        ]
        scores = iter(self.reranker.score(pairs))
        reranked = []
        for hits in hit_lists:
            head = [Hit(hit.passage, next(scores)) for hit in hits[:depth]]
            # sort() is stable: equal scores keep the fused order.
            head.sort(key=lambda hit: -hit.score)
            reranked.append(head + hits[depth:])
        return reranked

    def titles_of(self, document_ids: Sequence[str]) -> frozenset[str]:
        """The titles of these documents in the index (those it does not hold are left out)."""
        found = (self.index.document(doc_id) for doc_id in document_ids)
        return frozenset(document.title for document in found if document is not None)

    def fuse(self, dense: KeyRanking, lexical: KeyRanking, method: FusionMethod | None = None) -> KeyRanking:
        """One question's dense and BM25 rankings as one, by `method` (default: the settings')."""
        method = method or self.settings.fusion
        if method == "rrf":
            return reciprocal_rank_fusion([dense, lexical])
        return weighted_fusion(dense, lexical, dense_weight=self.settings.fusion_dense_weight)


def _without_titles(
    view: IndexView, rankings: list[KeyRanking], excluded: Sequence[Collection[str]]
) -> list[KeyRanking]:
    """Each ranking without the passages whose title its question excludes (the passages are read)."""
    return [
        [pair for pair, hit in zip(ranking, hits, strict=True) if hit.passage.title not in titles]
        for ranking, hits, titles in zip(rankings, view.hits(rankings), excluded, strict=True)
    ]
