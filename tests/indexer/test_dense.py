"""faiss indexes: exact hits for each type, parameters, IVF-PQ re-ranking, removal and addition by key,
save/load, the search's OpenMP team."""

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from kotae.core.errors import InputError, KotaeError
from kotae.indexer.dense import DenseIndex, HnswSpec, IvfPqSpec, dense_spec, search_team

DIMENSION = 16
IVFPQ = {"nbits": 4, "m": 4, "nprobe": 4}
TYPES = {"flat": {}, "hnsw": {"M": 8}, "ivfpq": IVFPQ, "ivfpq codes only": {**IVFPQ, "rerank": 0}}


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    faiss.normalize_L2(vectors)
    return vectors


VECTORS = unit_vectors(200, seed=1)
KEYS = np.arange(1000, 1200, dtype=np.int64)


@pytest.fixture(params=list(TYPES))
def built(request: pytest.FixtureRequest) -> DenseIndex:
    index_type = request.param.split()[0]
    return DenseIndex.build(dense_spec(index_type, TYPES[request.param]), VECTORS, KEYS)


def codes_only(index: DenseIndex) -> bool:
    return isinstance(index.spec, IvfPqSpec) and index.spec.rerank == 0


def test_each_type_finds_a_stored_vector_first(built: DenseIndex) -> None:
    results = built.search(VECTORS[:20], 3)
    found = sum(ranked[0][0] == key for ranked, key in zip(results, KEYS[:20], strict=True))
    # IVF-PQ's codes score approximately (4-bit codes here); exact scores must be right every time.
    assert found >= (16 if codes_only(built) else 20)
    if not codes_only(built):
        assert all(ranked[0][1] == pytest.approx(1.0, abs=1e-5) for ranked in results)
    assert len(built) == 200 and built.dimension == DIMENSION


def test_one_query_at_a_time_ranks_as_the_batch_and_keeps_faiss_threads(built: DenseIndex) -> None:
    """A single query searches on one OpenMP thread, set for the calling thread only and restored."""
    threads = faiss.omp_get_max_threads()
    batch = built.search(VECTORS[:8], 5)
    one_by_one = [built.search(VECTORS[i : i + 1], 5)[0] for i in range(8)]
    assert keys_of(one_by_one) == keys_of(batch)
    assert faiss.omp_get_max_threads() == threads


def test_a_search_team_caps_this_threads_faiss_threads_for_the_block_only(faiss_threads: int) -> None:
    def seen_by_another_thread() -> int:
        seen: list[int] = []
        other = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
        other.start()
        other.join()
        return seen[0]

    elsewhere = seen_by_another_thread()
    with search_team(2):
        assert faiss.omp_get_max_threads() == 2
        with search_team(8):  # a cap, never more than the block around it
            assert faiss.omp_get_max_threads() == 2
        assert seen_by_another_thread() == elsewhere, "other threads' searches keep their own team"
    assert faiss.omp_get_max_threads() == faiss_threads
    with search_team(0):
        assert faiss.omp_get_max_threads() == faiss_threads


def test_removal_and_addition_by_key(built: DenseIndex, tmp_path: Path) -> None:
    removed = KEYS[:50]
    new_vectors, new_keys = unit_vectors(10, seed=2), np.arange(5000, 5010, dtype=np.int64)
    updated = built.updated(removed, new_vectors, new_keys)
    assert len(updated) == 160
    found = {
        key for ranked in updated.search(np.concatenate([VECTORS[:50], new_vectors]), 5) for key, _ in ranked
    }
    assert not found & set(removed.tolist())
    results = updated.search(new_vectors, 5)
    found_new = sum(key in {k for k, _ in ranked} for ranked, key in zip(results, new_keys, strict=True))
    assert found_new >= (8 if codes_only(built) else 10)
    updated.save(tmp_path / "dense.faiss")
    assert len(DenseIndex.load(tmp_path / "dense.faiss", updated.spec)) == 160


def test_automatic_ivfpq_parameters_are_recorded() -> None:
    spec = DenseIndex.build(IvfPqSpec(nbits=4), VECTORS, KEYS).spec
    assert isinstance(spec, IvfPqSpec)
    assert (spec.nlist, spec.m) == (5, 4)  # min(4·√200, 200 // 39) clusters; dimension/4 sub-quantizers


def test_ivfpq_reranking_gives_exact_results() -> None:
    """Every list probed and a shortlist of every vector: re-ranking must then rank exactly like Flat,
    where the coarse codes alone (2 sub-quantizers of 4 bits) do not."""
    queries, k = unit_vectors(30, seed=3), 5
    exact = DenseIndex.build(dense_spec("flat"), VECTORS, KEYS).search(queries, k)
    everything = {"nbits": 4, "m": 2, "nlist": 5, "nprobe": 5}
    reranked = DenseIndex.build(IvfPqSpec(**everything, rerank=len(VECTORS) // k), VECTORS, KEYS)
    results = reranked.search(queries, k)
    assert keys_of(results) == keys_of(exact)
    for ranked, truth in zip(results, exact, strict=True):
        assert [score for _, score in ranked] == pytest.approx([score for _, score in truth], abs=1e-5)
    codes = DenseIndex.build(IvfPqSpec(**everything, rerank=0), VECTORS, KEYS)
    assert keys_of(codes.search(queries, k)) != keys_of(exact)


def test_ivfpq_searched_exhaustively_ranks_as_flat() -> None:
    """One list probed misses neighbours; the exhaustive search scans the exact vectors as Flat does."""
    queries, k = unit_vectors(30, seed=4), 5
    exact = DenseIndex.build(dense_spec("flat"), VECTORS, KEYS).search(queries, k)
    probed_once = DenseIndex.build(IvfPqSpec(nbits=4, m=4, nlist=5, nprobe=1), VECTORS, KEYS)
    assert keys_of(probed_once.search(queries, k)) != keys_of(exact)
    exhaustive = probed_once.search_exhaustively(queries, k)
    assert keys_of(exhaustive) == keys_of(exact)
    with pytest.raises(KotaeError, match="no exact vectors"):
        DenseIndex.build(IvfPqSpec(**IVFPQ, rerank=0), VECTORS, KEYS).search_exhaustively(queries, k)


def keys_of(results: list[list[tuple[int, float]]]) -> list[list[int]]:
    return [[key for key, _ in ranked] for ranked in results]


def stored_vectors(index: DenseIndex) -> faiss.IndexFlatCodes:
    """The full vectors an index keeps: IVF-PQ's exact ones, Flat's, HNSW's."""
    inner = faiss.downcast_index((index._exact or index._index).index)
    return faiss.downcast_index(inner.storage) if isinstance(index.spec, HnswSpec) else inner


def test_a_mapped_index_searches_as_a_read_one(built: DenseIndex, tmp_path: Path) -> None:
    """Mapped, the full vectors stay in the file (the page cache), not in the process's own memory."""
    built.save(tmp_path / "dense.faiss")
    read = DenseIndex.load(tmp_path / "dense.faiss", built.spec, gpu=False)
    mapped = DenseIndex.load(tmp_path / "dense.faiss", built.spec, gpu=False, mapped=True)
    queries = unit_vectors(10, seed=5)
    assert mapped.search(queries, 5) == read.search(queries, 5)
    if not codes_only(built):
        assert stored_vectors(read).codes.is_owned and not stored_vectors(mapped).codes.is_owned


def test_ivfpq_index_without_exact_vectors_still_loads(tmp_path: Path) -> None:
    """A file of codes only (built with rerank 0, or before re-ranking existed: its manifest then lacks
    `rerank`, and reads the default) is served from its codes."""
    DenseIndex.build(IvfPqSpec(**IVFPQ, rerank=0), VECTORS, KEYS).save(tmp_path / "dense.faiss")
    loaded = DenseIndex.load(tmp_path / "dense.faiss", dense_spec("ivfpq", IVFPQ))
    assert isinstance(loaded.spec, IvfPqSpec) and loaded.spec.rerank == 0
    assert [ranked[0][0] for ranked in loaded.search(VECTORS[:5], 1)] == KEYS[:5].tolist()
    with pytest.raises(KotaeError, match="more than search parameters"):
        loaded.tune_search(loaded.spec.model_copy(update={"rerank": 8}))


def test_search_parameters_survive_a_reload(tmp_path: Path) -> None:
    DenseIndex.build(HnswSpec(M=8, ef_search=77), VECTORS, KEYS).save(tmp_path / "d.faiss")
    loaded = DenseIndex.load(tmp_path / "d.faiss", HnswSpec(M=8, ef_search=77))
    assert faiss.downcast_index(loaded._index.index).hnsw.efSearch == 77


def test_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(KotaeError, match="bad parameters for a hnsw index: M"):
        dense_spec("hnsw", {"M": "many"})
    with pytest.raises(KotaeError, match="ef_serch"):
        dense_spec("hnsw", {"ef_serch": 10})
    with pytest.raises(KotaeError, match="needs at least 256 passages"):
        DenseIndex.build(IvfPqSpec(), VECTORS, KEYS)
    with pytest.raises(KotaeError, match="must divide"):
        DenseIndex.build(IvfPqSpec(nbits=4, m=5), VECTORS, KEYS)


def test_damaged_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "dense.faiss"
    path.write_bytes(b"not a faiss index")
    with pytest.raises(InputError, match="faiss index unreadable") as caught:
        DenseIndex.load(path, HnswSpec())
    assert caught.value.path == path


def test_search_parameters_can_be_tuned_without_a_rebuild() -> None:
    index = DenseIndex.build(HnswSpec(M=8, ef_search=4), VECTORS, KEYS)
    index.tune_search(HnswSpec(M=8, ef_search=200))
    assert [ranked[0][0] for ranked in index.search(VECTORS[:20], 1)] == KEYS[:20].tolist()
    with pytest.raises(KotaeError, match="more than search parameters"):
        index.tune_search(HnswSpec(M=16))


def test_ivfpq_with_its_coarse_quantizer_on_a_torch_device() -> None:
    """The coarse k-means and the list assignment done with torch (here on the CPU, as on a GPU): faiss
    keeps those centroids, trains only the codes, files each vector under its nearest centroid, and the
    index finds what the faiss-trained one finds."""
    clustered = np.repeat(unit_vectors(20, seed=4), 30, axis=0) + 0.05 * unit_vectors(600, seed=5)
    vectors = clustered / np.linalg.norm(clustered, axis=1, keepdims=True)
    keys = np.arange(1, 601, dtype=np.int64)
    spec = IvfPqSpec(nbits=4, m=4, nlist=20, nprobe=2)

    def rows(wanted: np.ndarray) -> np.ndarray:
        return vectors[wanted]

    on_device = DenseIndex.trained(spec, DIMENSION, len(vectors), rows, device="cpu")
    on_device.add(vectors, keys)
    ivf = faiss.extract_index_ivf(on_device._searched)
    centroids = on_device._coarse.centroids  # type: ignore[union-attr]
    assert ivf.quantizer.ntotal == 20
    np.testing.assert_array_equal(ivf.quantizer.reconstruct_n(0, 20), centroids)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    _, nearest = ivf.quantizer.search(vectors, 1)
    lists = {key: list_number for list_number in range(20) for key in _list_keys(ivf, list_number)}
    assert [lists[key] for key in keys] == nearest.ravel().tolist()
    by_faiss = DenseIndex.build(spec, vectors, keys)
    queries = vectors[::30]
    assert keys_of(on_device.search(queries, 5)) == keys_of(by_faiss.search(queries, 5))


def _list_keys(ivf: faiss.IndexIVF, list_number: int) -> list[int]:
    size = ivf.invlists.list_size(list_number)
    return faiss.rev_swig_ptr(ivf.invlists.get_ids(list_number), size).tolist()
