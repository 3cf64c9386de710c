"""Retrieval: rank fusion on hand-made rankings, then each mode over a small real index."""

import copy
import threading
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest
from jsonl_files import write_jsonl

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index, IndexView, KeyRanking
from kotae.indexer.store import PassageStore
from kotae.rag.fusion import min_max, reciprocal_rank_fusion, weighted_fusion
from kotae.rag.reranker import Reranker
from kotae.rag.retriever import Retriever
from kotae.rag.stage_times import StageTimes

CORPUS = [
    {
        "id": "mikan",
        "title": "みかん島",
        "text": "みかん島は内海に浮かぶ島である。島の人口は約800人で、柑橘の栽培が盛んである。",
    },
    {"id": "kurumi", "title": "くるみ山", "text": "くるみ山は標高512メートルの山である。登山道は二本ある。"},
    {"id": "toudai", "title": "白浜灯台", "text": "白浜灯台は1890年に建てられた。初代の灯台守は三人いた。"},
    {
        "id": "ramen",
        "title": "味噌ラーメン",
        "text": "味噌ラーメンは札幌で生まれた料理である。濃厚なスープが特徴である。",
    },
    {
        "id": "shinkansen",
        "title": "新幹線",
        "text": "新幹線は1964年に開業した高速鉄道である。東京と大阪を結んだ。",
    },
    {
        "id": "sumo",
        "title": "相撲",
        "text": "相撲は土俵の上で二人の力士が戦う競技である。横綱が最高位である。",
    },
]
# Questions whose words appear in exactly one passage (BM25 must find it) and that paraphrase it (E5 must).
QUESTIONS = {
    "くるみ山の標高は何メートルか。": "kurumi",
    "白浜灯台が建てられたのはいつ？": "toudai",
    "札幌で生まれたラーメンは何味？": "ramen",
    "新幹線が開業した年は？": "shinkansen",
}


# Fusion ---------------------------------------------------------------------------------------------------

DENSE = [("a", 0.9), ("b", 0.7), ("c", 0.5)]
LEXICAL = [("c", 10.0), ("a", 4.0), ("d", 1.0)]


def test_rrf_adds_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([DENSE, LEXICAL])
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert dict(fused)["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert dict(fused)["d"] == pytest.approx(1 / 63)
    assert dict(reciprocal_rank_fusion([DENSE, LEXICAL], k=1))["c"] == pytest.approx(1 / 4 + 1 / 2)


def test_rrf_ties_keep_first_seen_order() -> None:
    assert reciprocal_rank_fusion([[("x", 5.0)], [("y", 1.0)]]) == [("x", 1 / 61), ("y", 1 / 61)]
    assert reciprocal_rank_fusion([]) == []


def test_weighted_fusion_normalises_then_weights() -> None:
    fused = weighted_fusion(DENSE, LEXICAL, dense_weight=0.5)
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert dict(fused)["a"] == pytest.approx(0.5 * 1 + 0.5 * (4 - 1) / 9)
    assert [item for item, _ in weighted_fusion(DENSE, LEXICAL, dense_weight=0.2)] == ["c", "a", "b", "d"]
    assert [item for item, _ in weighted_fusion(DENSE, LEXICAL, dense_weight=1.0)][:3] == ["a", "b", "c"]
    assert weighted_fusion(DENSE, [], dense_weight=0.5)[0] == ("a", 0.5)


def test_min_max() -> None:
    assert min_max([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert min_max([2.0, 2.0]) == [1.0, 1.0]  # equal scores are all as good as the best
    assert min_max([]) == []


# Retrieval over an index ----------------------------------------------------------------------------------


class CountingEmbedder(Embedder):
    """The real embedder, counting query batches."""

    def __init__(self, real: Embedder) -> None:
        self.__dict__.update(real.__dict__)
        self.query_batches: list[int] = []

    def embed_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.query_batches.append(len(texts))
        return super().embed_queries(texts, batch_size)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", CORPUS)


@pytest.fixture(scope="module")
def tiny(embedder: Embedder) -> Embedder:
    return CountingEmbedder(embedder)


@pytest.fixture(scope="module")
def index(corpus: Path, tiny: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Index:
    out = tmp_path_factory.mktemp("indexes") / "small"
    build_index([corpus], out, tiny)
    return Index.open(out)


def test_bm25_finds_the_passage(index: Index, tiny: Embedder) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval="bm25"))
    for question, expected in QUESTIONS.items():
        hits = retriever.retrieve(question, 3)
        assert hits[0].passage.id == expected, question
        assert hits[0].passage == index.passage(expected)


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hybrid_fuses_and_keeps_bm25s_clear_answers(index: Index, tiny: Embedder, fusion: str) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval="hybrid", fusion=fusion, fusion_dense_weight=0.3))
    for question, expected in QUESTIONS.items():
        hits = retriever.retrieve(question, 3)
        assert len(hits) == 3 and len({hit.passage.id for hit in hits}) == 3
        assert expected in [hit.passage.id for hit in hits], question
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_modes_and_fusion_can_be_chosen_per_call(index: Index, tiny: Embedder) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval="hybrid", fusion="rrf"))
    dense = retriever.retrieve("灯台", 6, mode="dense")
    assert len(dense) == 6 and all(-1.0 <= hit.score <= 1.0 for hit in dense)
    lexical = retriever.retrieve("灯台", 6, mode="bm25")
    assert [hit.passage.id for hit in lexical] == ["toudai"]  # BM25 returns only passages sharing a word
    weighted = retriever.retrieve("灯台", 2, fusion="weighted")
    assert all(0.0 <= hit.score <= 1.0 for hit in weighted)


@pytest.mark.parametrize(
    ("settings", "described"),
    [
        (Settings(retrieval="dense"), "dense"),
        (Settings(retrieval="bm25"), "bm25"),
        (Settings(retrieval="hybrid", fusion="rrf"), "hybrid rrf"),
        (Settings(retrieval="hybrid", fusion="weighted", fusion_dense_weight=0.4), "hybrid weighted 0.4"),
    ],
)
def test_describe_names_mode_fusion_and_weight(
    index: Index, tiny: Embedder, settings: Settings, described: str
) -> None:
    assert Retriever(index, tiny, settings).describe() == described


def test_retrieve_many_embeds_once_and_matches_retrieve(index: Index, tiny: CountingEmbedder) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval="hybrid"))
    questions = list(QUESTIONS)
    tiny.query_batches.clear()
    many = retriever.retrieve_many(questions, 4)
    assert tiny.query_batches == [len(questions)]
    singles = [retriever.retrieve(question, 4) for question in questions]
    assert [[hit.passage for hit in hits] for hits in many] == [
        [hit.passage for hit in hits] for hits in singles
    ]
    # A batch embeds in other float order than one question alone; weighted fusion passes the last bits on.
    assert [hit.score for hits in many for hit in hits] == pytest.approx(
        [hit.score for hits in singles for hit in hits], abs=1e-5
    )
    assert retriever.retrieve_many([], 4) == []


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_questions_embedded_beforehand_are_searched_as_if_embedded_there(
    index: Index, tiny: CountingEmbedder, mode: str
) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval=mode))
    questions = list(QUESTIONS)
    assert retriever.embeds_questions()
    vectors = tiny.embed_queries(questions)
    times = StageTimes()
    tiny.query_batches.clear()
    given = retriever.search_many(questions, 4, query_vectors=vectors, times=times)
    assert tiny.query_batches == [] and "embed" not in times.ms
    assert given == retriever.search_many(questions, 4)
    with pytest.raises(ValueError, match="2 query vectors for 3 questions"):
        retriever.search_many(questions[:3], 4, query_vectors=vectors[:2])


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_a_deeper_ranking_is_named_but_only_the_hits_are_read(
    index: Index, tiny: Embedder, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval=mode))
    questions = list(QUESTIONS)
    deep = retriever.search_many(questions, 5)
    read: list[int] = []
    passages = PassageStore.passages

    def counted(store: PassageStore, keys: Sequence[int]) -> list[Passage]:
        read.append(len(keys))
        return passages(store, keys)

    monkeypatch.setattr(PassageStore, "passages", counted)
    found = retriever.search_many(questions, 2, ranked_depth=5)
    assert read == [sum(len(retrieval.hits) for retrieval in found)], "the others are named, not read"
    for shallow, full in zip(found, deep, strict=True):
        assert shallow.hits == full.hits[:2]
        assert shallow.ranked_ids == [hit.passage.id for hit in full.hits]
    assert deep[0].ranked_ids is None


class WaitingEmbedder(CountingEmbedder):
    """The real embedder, which embeds only once BM25 has ranked (or after a timeout)."""

    def __init__(self, real: Embedder, bm25_ranked: threading.Event) -> None:
        super().__init__(real)
        self.bm25_ranked = bm25_ranked
        self.saw_bm25_while_embedding = False

    def embed_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.saw_bm25_while_embedding = self.bm25_ranked.wait(timeout=30)
        return super().embed_queries(texts, batch_size)


def test_hybrid_ranks_bm25_while_the_questions_are_embedded(
    index: Index, tiny: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    bm25_ranked = threading.Event()
    rank_words = IndexView.rank_words

    def ranked_then_signal(view: IndexView, queries: Sequence[list[str]], k: int) -> list[KeyRanking]:
        rankings = rank_words(view, queries, k)
        bm25_ranked.set()
        return rankings

    monkeypatch.setattr(IndexView, "rank_words", ranked_then_signal)
    waiting = WaitingEmbedder(tiny, bm25_ranked)
    retriever = Retriever(index, waiting, Settings(retrieval="hybrid"))
    times = StageTimes()
    found = retriever.search_many(list(QUESTIONS), 3, times=times)
    assert waiting.saw_bm25_while_embedding
    for retrieval, expected in zip(found, QUESTIONS.values(), strict=True):
        assert expected in [hit.passage.id for hit in retrieval.hits]
    assert set(times.ms) == {"embed", "dense", "tokenize", "bm25", "fuse", "read"}


@pytest.mark.parametrize("threads", [1, 2])
def test_a_batchs_dense_search_runs_on_at_most_search_threads(
    index: Index, tiny: Embedder, monkeypatch: pytest.MonkeyPatch, threads: int, faiss_threads: int
) -> None:
    teams: list[int] = []
    rank_dense = IndexView.rank_dense

    def recorded(view: IndexView, vectors: np.ndarray, k: int, exhaustive: bool = False) -> list[KeyRanking]:
        teams.append(faiss.omp_get_max_threads())
        return rank_dense(view, vectors, k, exhaustive)

    monkeypatch.setattr(IndexView, "rank_dense", recorded)
    retriever = Retriever(index, tiny, Settings(retrieval="hybrid", search_threads=threads))
    retriever.search_many(list(QUESTIONS), 3)
    assert teams == [threads] and faiss.omp_get_max_threads() == faiss_threads


def test_another_embedder_is_refused(index: Index, tiny: Embedder) -> None:
    other = copy.copy(tiny)
    other.name, other.hash = "multilingual-e5-small", "f" * 64
    with pytest.raises(KotaeError) as caught:
        Retriever(index, other, Settings())
    assert str(caught.value).startswith(
        f"index {index.directory} was built with embedder tiny-e5 (hash {tiny.hash[:12]}) "
        f"but kotae is configured with multilingual-e5-small (hash ffffffffffff)"
    )


def test_an_index_without_bm25_serves_dense_only(corpus: Path, tiny: Embedder, tmp_path: Path) -> None:
    build_index([corpus], tmp_path / "dense", tiny, bm25=False)
    index = Index.open(tmp_path / "dense")
    with pytest.raises(KotaeError, match=r"needs BM25.*KOTAE_RETRIEVAL=dense"):
        Retriever(index, tiny, Settings(retrieval="hybrid"))
    retriever = Retriever(index, tiny, Settings(retrieval="dense"))
    assert len(retriever.retrieve("灯台", 2)) == 2
    with pytest.raises(KotaeError, match="no BM25 index"):
        retriever.retrieve("灯台", 2, mode="bm25")


def test_real_e5_finds_paraphrased_passages(corpus: Path, e5_small: Path, tmp_path: Path) -> None:
    e5 = Embedder(e5_small)
    build_index([corpus], tmp_path / "e5", e5)
    retriever = Retriever(Index.open(tmp_path / "e5"), e5, Settings(retrieval="dense"))
    for question, expected in {
        **QUESTIONS,
        "北海道の都市で生まれた麺料理": "ramen",
        "力士の最高位": "sumo",
    }.items():
        assert retriever.retrieve(question, 1)[0].passage.id == expected, question


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_excluded_titles_are_searched_as_if_absent(index: Index, tiny: Embedder, mode: str) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval=mode, abstain_min_cosine=0.5))
    questions = list(QUESTIONS)
    titles = [retriever.titles_of([QUESTIONS[question]]) for question in questions]
    assert titles[0] == {"くるみ山"}
    without = retriever.search_many(questions, 6, excluded_titles=titles)
    for question, found, excluded in zip(questions, without, titles, strict=True):
        ids = [hit.passage.id for hit in found.hits]
        assert QUESTIONS[question] not in ids and all(hit.passage.title not in excluded for hit in found.hits)
        dense = [
            hit for hit in retriever.retrieve(question, 6, mode="dense") if hit.passage.title not in excluded
        ]
        assert found.best_cosine == pytest.approx(dense[0].score), "the best cosine of what is left"
    with_gold = retriever.search_many(questions, 6)
    assert all(found.best_cosine is not None for found in with_gold)
    if mode != "bm25":
        assert [[h.passage.id for h in found.hits] for found in with_gold] == [
            [h.passage.id for h in hits] for hits in retriever.retrieve_many(questions, 6)
        ]


def test_best_cosine_is_left_out_of_bm25_retrieval_with_the_gate_off(index: Index, tiny: Embedder) -> None:
    retriever = Retriever(index, tiny, Settings(retrieval="bm25", abstain_min_cosine=0))
    assert not retriever.embeds_questions()
    assert retriever.search_many(["灯台"], 3)[0].best_cosine is None
    assert retriever.titles_of(["toudai", "nowhere"]) == {"白浜灯台"}


# Re-ranking -----------------------------------------------------------------------------------------------


class FavouriteScorer:
    """A reranker that scores the passages of `favourites` best first and every other passage alike, below
    them; it records how many pairs each call scored."""

    def __init__(self, favourites: Sequence[str]) -> None:
        self.favourites = list(favourites)
        self.calls: list[int] = []

    def score(self, pairs: Sequence[tuple[str, Passage]]) -> list[float]:
        self.calls.append(len(pairs))
        top = len(self.favourites)
        return [
            float(top - self.favourites.index(p.id)) if p.id in self.favourites else 0.0 for _, p in pairs
        ]


def test_hybrid_hits_are_the_fused_candidates_reordered_by_the_reranker(index: Index, tiny: Embedder) -> None:
    settings = Settings(retrieval="hybrid")
    scorer = FavouriteScorer(["sumo", "mikan"])
    reranked = Retriever(index, tiny, settings, reranker=scorer)
    questions = list(QUESTIONS)

    many = reranked.retrieve_many(questions, 3)

    # One call for the batch, every fused candidate of every question scored (6 passages each).
    assert scorer.calls == [6 * len(questions)]
    fused = Retriever(index, tiny, settings).retrieve_many(questions, 6)
    for hits, plain in zip(many, fused, strict=True):
        rest = next(hit.passage.id for hit in plain if hit.passage.id not in {"sumo", "mikan"})
        assert [hit.passage.id for hit in hits] == ["sumo", "mikan", rest]  # ties keep the fused order
        assert [hit.score for hit in hits] == [2.0, 1.0, 0.0]


def test_a_reranked_ranking_is_named_in_the_rerankers_order(index: Index, tiny: Embedder) -> None:
    settings = Settings(retrieval="hybrid", rerank_depth=3)
    question = "くるみ山の標高は何メートルか。"
    fused = [hit.passage.id for hit in Retriever(index, tiny, settings).retrieve(question, 6)]
    retriever = Retriever(index, tiny, settings, reranker=FavouriteScorer([fused[2]]))
    [found] = retriever.search_many([question], 1, ranked_depth=6)
    assert [hit.passage.id for hit in found.hits] == [fused[2]]
    assert found.ranked_ids == [fused[2], fused[0], fused[1], *fused[3:]]


def test_only_the_rerank_depth_is_reordered_and_other_modes_never(index: Index, tiny: Embedder) -> None:
    settings = Settings(retrieval="hybrid", rerank_depth=3)
    question = "くるみ山の標高は何メートルか。"
    fused = Retriever(index, tiny, settings).retrieve(question, 6)
    ids = [hit.passage.id for hit in fused]
    # The fused third is favoured above the first; the fifth is favoured most but lies beyond the depth.
    retriever = Retriever(index, tiny, settings, reranker=FavouriteScorer([ids[4], ids[2], ids[0]]))

    hits = retriever.retrieve(question, 6)

    assert [hit.passage.id for hit in hits] == [ids[2], ids[0], ids[1], ids[3], ids[4], ids[5]]
    assert hits[3:] == fused[3:]
    for mode in ("dense", "bm25"):
        assert retriever.retrieve(question, 4, mode=mode) == Retriever(index, tiny, settings).retrieve(
            question, 4, mode=mode
        )
    assert retriever.describe() == "hybrid weighted 0.4 reranked top 3"
    # A depth given to rerank() overrides the settings': the fifth now counts and comes first.
    deeper = retriever.rerank([question], [fused], depth=5)[0]
    assert [hit.passage.id for hit in deeper] == [ids[4], ids[2], ids[0], ids[1], ids[3], ids[5]]


def test_the_tiny_cross_encoder_reorders_hybrid_retrieval(
    index: Index, tiny: Embedder, tiny_reranker: Path
) -> None:
    reranker = Reranker(tiny_reranker)
    question = "新幹線が開業した年は？"
    candidates = Retriever(index, tiny, Settings()).retrieve(question, 6)
    times = StageTimes()

    found = Retriever(index, tiny, Settings(), reranker=reranker).search_many([question], 3, times=times)

    expected = sorted(
        zip(reranker.score([(question, hit.passage) for hit in candidates]), candidates, strict=True),
        key=lambda pair: -pair[0],
    )[:3]
    assert [hit.passage for hit in found[0].hits] == [hit.passage for _, hit in expected]
    assert [hit.score for hit in found[0].hits] == pytest.approx([score for score, _ in expected])
    assert "rerank" in times.ms
