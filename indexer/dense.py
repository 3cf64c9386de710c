"""Dense index: faiss over normalized embeddings (inner product = cosine), keyed by passage key."""

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kotae.core.errors import InputError, KotaeError
from kotae.indexer.coarse import CoarseQuantizer
from kotae.indexer.layout import IndexType

_TRAINING_POINTS_PER_CLUSTER = 64


@contextmanager
def search_team(threads: int) -> Iterator[None]:
    """faiss's OpenMP team for the calling thread's searches inside the block: at most `threads` (0: left
    as it is). The team size is this thread's own (an OpenMP ICV), so other threads' searches keep theirs."""
    before = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(min(threads, before))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FlatSpec(BaseModel):
    """Exact search: every query scans every vector. Best recall, linear time."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["flat"] = "flat"


class HnswSpec(BaseModel):
    """Graph search: fast at millions of vectors, full vectors in memory. Removing passages rebuilds it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["hnsw"] = "hnsw"
    M: int = Field(32, ge=4, le=256)
    """Links per node: more is better recall and more memory."""
    ef_construction: int = Field(200, ge=8)
    """Candidate list while building: more is a better graph and a slower build."""
    ef_search: int = Field(128, ge=1)
    """Candidate list while searching (at least k): the recall/latency knob."""


class IvfPqSpec(BaseModel):
    """Inverted lists of product-quantized codes, trained on the corpus: the codes shortlist candidates
    cheaply, then the exact vectors (kept beside them) re-rank the shortlist."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["ivfpq"] = "ivfpq"
    nlist: int | None = Field(None, ge=1)
    """Coarse clusters; unset picks about 4·√n."""
    m: int | None = Field(None, ge=1)
    """Sub-quantizers (must divide the dimension); unset picks dimension/4, i.e. codes of 4 dimensions.
    E5 vectors are so alike that codes alone lose neighbours; with re-ranking they only need to shortlist
    them, which codes of 8 dimensions do too coarsely (docs/BENCHMARKS.md, faiss index types)."""
    nbits: int = Field(8, ge=1, le=16)
    """Bits per sub-quantizer code; training needs at least 2**nbits passages."""
    nprobe: int = Field(64, ge=1)
    """Clusters visited per query: a recall/latency knob. The defaults of nprobe and rerank are the
    smallest that keep 0.95 of Flat's recall@10 from 18k to 1M passages (docs/BENCHMARKS.md, faiss index
    types)."""
    rerank: int = Field(64, ge=0)
    """Candidates per wanted hit that the codes shortlist and the exact vectors re-score (faiss's
    k_factor): a recall/latency knob. 0 keeps no exact vectors (codes of m bytes per passage instead of
    Flat's 4·dimension on top) and ranks by the codes' approximate scores."""


DenseSpec = Annotated[FlatSpec | HnswSpec | IvfPqSpec, Field(discriminator="type")]
_SPEC = TypeAdapter(DenseSpec)


def dense_spec(index_type: IndexType, params: Mapping[str, object] | None = None) -> DenseSpec:
    """The spec of `index_type` with `params` (e.g. from `--param M=48`), validated."""
    try:
        return _SPEC.validate_python({**(params or {}), "type": index_type})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
        raise KotaeError(f"bad parameters for a {index_type} index: {problems}") from error


class DenseIndex:
    """Flat and HNSW sit in an `IndexIDMap2` (ids → passage keys); IVF-PQ stores the keys in its lists
    itself: faiss's id map assumes a removal renumbers the remaining vectors, which IVF does not do.
    IVF-PQ's exact vectors for re-ranking sit in an `IndexIDMap2` of their own, and both are saved as one
    `IndexRefine`, faiss's file for that pair. Its search, which wants ids 0…n-1, is not used: re-ranking
    is done here, by passage key."""

    def __init__(self, index: faiss.Index, spec: DenseSpec, coarse: CoarseQuantizer | None = None) -> None:
        self._index = index
        """As saved (CPU); for IVF-PQ with re-ranking, the `IndexRefine` of codes and exact vectors."""
        self.spec = spec
        """As built: automatic parameters (nlist, m) are resolved to the values used."""
        refine = index if isinstance(index, faiss.IndexRefine) else None
        self._searched = faiss.downcast_index(refine.base_index) if refine else index
        """What a query searches first: the whole index, or IVF-PQ's codes when re-ranking follows."""
        self._exact = faiss.downcast_index(refine.refine_index) if refine else None
        self._exact_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        """`_exact`'s vectors as a numpy view of faiss's storage, its keys sorted and the row of each,
        made on first re-ranking; any change to the index drops it (faiss may move its storage)."""
        self._coarse = coarse
        """IVF-PQ built with its coarse quantizer on a torch device: added vectors are assigned there."""
        self._gpu_resources: object | None = None
        # Searches on a CPU index may run concurrently; a GPU index's may not.
        self._gpu_lock = threading.Lock()
        self._apply_search_params()

    @classmethod
    def build(cls, spec: DenseSpec, vectors: np.ndarray, keys: np.ndarray) -> "DenseIndex":
        index = cls.trained(spec, vectors.shape[1], len(vectors), lambda rows: vectors[rows])
        index.add(vectors, keys)
        return index

    @classmethod
    def trained(
        cls,
        spec: DenseSpec,
        dimension: int,
        count: int,
        rows: Callable[[np.ndarray], np.ndarray],
        device: str | None = None,
    ) -> "DenseIndex":
        """An empty index for `count` vectors, ready for `add`. IVF-PQ trains here on a sample of the
        vectors, which `rows(sorted row numbers)` returns: the corpus need not be in memory at once.
        `device`: a torch device (a GPU) that trains IVF-PQ's coarse quantizer and assigns the vectors
        this index adds to their lists (`coarse.CoarseQuantizer`); None leaves both to faiss."""
        match spec:
            case FlatSpec():
                inner: faiss.Index = faiss.IndexFlatIP(dimension)
            case HnswSpec():
                inner = faiss.IndexHNSWFlat(dimension, spec.M, faiss.METRIC_INNER_PRODUCT)
                inner.hnsw.efConstruction = spec.ef_construction
            case IvfPqSpec():
                spec = _resolve_ivfpq(spec, count, dimension)
                sample = rows(_training_rows(count, spec))
                assert spec.nlist is not None
                coarse = CoarseQuantizer.trained(sample, spec.nlist, device) if device else None
                return cls(_ivfpq(spec, dimension, sample, coarse), spec, coarse)
        return cls(faiss.IndexIDMap2(inner), spec)

    def add(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        """Adds vectors under their passage keys."""
        if not len(keys):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.asarray(keys, dtype=np.int64)
        if self._coarse is not None:
            add_preassigned(self._searched, vectors, self._coarse.assign(vectors), keys)
        else:
            self._searched.add_with_ids(vectors, keys)
        if self._exact is not None:
            self._exact.add_with_ids(vectors, keys)
            self._exact_rows = None
        self._index.ntotal = self._searched.ntotal  # the IndexRefine's count, which its parts don't update

    @classmethod
    def load(cls, path: Path, spec: DenseSpec, gpu: bool = True, mapped: bool = False) -> "DenseIndex":
        """`gpu`: move Flat and IVF-PQ indexes to GPU 0 when faiss was built with CUDA and sees a GPU.
        `mapped`: map the stored full vectors (Flat's and HNSW's, IVF-PQ's exact ones) from the file
        instead of reading them, read-only: every process that serves the index shares one copy in the
        page cache. Such an index can be searched, not changed."""
        if not path.is_file():
            raise InputError(path, None, "faiss index missing: the index is incomplete; rebuild it")
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
        except RuntimeError as error:
            raise InputError(path, None, "faiss index unreadable (damaged?); rebuild the index") from error
        if isinstance(spec, IvfPqSpec) and isinstance(index, faiss.IndexIVFPQ):
            # Built before re-ranking existed: its manifest lacks `rerank`, whose default does not apply.
            spec = spec.model_copy(update={"rerank": 0})
        if not isinstance(index, _saved_class(spec)):
            raise InputError(path, None, f"not a kotae {spec.type} index; rebuild the index")
        loaded = cls(index, spec)
        if gpu:
            loaded._move_to_gpu()
        return loaded

    def save(self, path: Path) -> None:
        on_gpu = self._gpu_resources is not None and self._exact is None  # else only the codes' copy moved
        faiss.write_index(faiss.index_gpu_to_cpu(self._index) if on_gpu else self._index, str(path))

    @property
    def dimension(self) -> int:
        return self._index.d

    def __len__(self) -> int:
        return self._searched.ntotal

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Per query: (passage key, cosine) best first."""
        if self._exact is None or not isinstance(self.spec, IvfPqSpec):
            return _ranked(*self._search(vectors, k))
        _, shortlists = self._search(vectors, k * self.spec.rerank)
        rows = self._rows_of_exact()
        pairs = zip(vectors, shortlists, strict=True)
        return [_rerank(rows, query, shortlist[shortlist >= 0], k) for query, shortlist in pairs]

    def _rows_of_exact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Re-ranking gathers the shortlist's vectors with numpy: faiss's reconstruct_batch looks each key
        # up on its own (about 4 µs a key: 13 ms for a shortlist of 3,200).
        if self._exact_rows is None:
            assert self._exact is not None
            flat = faiss.downcast_index(self._exact.index)
            stored = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
            keys = faiss.vector_to_array(self._exact.id_map)
            order = np.argsort(keys, kind="stable")
            self._exact_rows = (stored, keys[order], order)
        return self._exact_rows

    def search_exhaustively(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """`search` against every stored vector: IVF-PQ scans its exact vectors, not its probed lists (Flat
        already does so, and HNSW searches its graph as ever). An IVF-PQ index of codes only has no exact
        vectors to scan."""
        if not isinstance(self.spec, IvfPqSpec):
            return self.search(vectors, k)
        if self._exact is None:
            raise KotaeError(
                "this IVF-PQ index keeps no exact vectors (rerank 0): nothing to search exhaustively"
            )
        return _ranked(*self._exact.search(np.ascontiguousarray(vectors, dtype=np.float32), k))

    def updated(self, removed: np.ndarray, vectors: np.ndarray, keys: np.ndarray) -> "DenseIndex":
        """This index less `removed` keys plus new vectors. faiss cannot remove from an HNSW graph, so HNSW
        is rebuilt from its stored vectors; Flat and IVF-PQ change in place (IVF-PQ keeps its training)."""
        if isinstance(self.spec, HnswSpec):
            kept_keys, kept_vectors = self._stored_vectors()
            kept = ~np.isin(kept_keys, removed)
            all_vectors = np.concatenate([kept_vectors[kept], vectors])
            return DenseIndex.build(self.spec, all_vectors, np.concatenate([kept_keys[kept], keys]))
        if len(removed):
            for part in (self._searched, self._exact):
                if part is not None:
                    part.remove_ids(np.asarray(removed, dtype=np.int64))
            self._exact_rows = None
        self.add(vectors, keys)
        return self

    def tune_search(self, spec: DenseSpec) -> None:
        """Switches to `spec`'s search-time parameters (ef_search, nprobe, rerank) in place: tuning recall
        against latency needs no rebuild. Its build parameters must be this index's, and re-ranking needs
        the exact vectors, which only an index built with rerank ≥ 1 keeps."""
        search_only = {"ef_search", "nprobe", "rerank"}
        differs = spec.model_dump(exclude=search_only) != self.spec.model_dump(exclude=search_only)
        if differs or _keeps_exact_vectors(spec) != _keeps_exact_vectors(self.spec):
            raise KotaeError(f"{spec} differs from {self.spec} in more than search parameters")
        self.spec = spec
        self._apply_search_params()

    def _search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's (scores, keys) arrays; a key of -1 fills a row the index had too few vectors for."""
        if self._gpu_resources:
            with self._gpu_lock:
                return self._searched.search(vectors, k)
        # faiss spreads a batch's queries over its OpenMP threads: one query gains nothing from them but
        # the cost of waking them (docs/BENCHMARKS.md, Wikipedia scale).
        with search_team(1 if len(vectors) == 1 else 0):
            return self._searched.search(vectors, k)

    def _stored_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        inner = faiss.downcast_index(self._index.index)
        return faiss.vector_to_array(self._index.id_map), inner.reconstruct_n(0, inner.ntotal)

    def _apply_search_params(self) -> None:
        match self.spec:
            case HnswSpec():
                faiss.downcast_index(self._index.index).hnsw.efSearch = self.spec.ef_search
            case IvfPqSpec():
                faiss.extract_index_ivf(self._searched).nprobe = self.spec.nprobe

    def _move_to_gpu(self) -> None:
        # faiss-cpu has no GPU classes; faiss-gpu builds have them even on machines without a GPU.
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            return
        if isinstance(self.spec, HnswSpec):  # faiss has no GPU HNSW
            return
        self._gpu_resources = faiss.StandardGpuResources()
        # The codes' scan moves; re-ranking a short list by key stays on the CPU copy of the exact vectors.
        self._searched = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._searched)
        if self._exact is None:
            self._index = self._searched


def _saved_class(spec: DenseSpec) -> type:
    if not isinstance(spec, IvfPqSpec):
        return faiss.IndexIDMap2
    return faiss.IndexRefine if _keeps_exact_vectors(spec) else faiss.IndexIVFPQ


def _keeps_exact_vectors(spec: DenseSpec) -> bool:
    return isinstance(spec, IvfPqSpec) and spec.rerank > 0


def _ivfpq(
    spec: IvfPqSpec, dimension: int, sample: np.ndarray, coarse: CoarseQuantizer | None
) -> faiss.Index:
    codes = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(dimension), dimension, spec.nlist, spec.m, spec.nbits, faiss.METRIC_INNER_PRODUCT
    )
    if coarse is not None:  # a quantizer holding nlist centroids already: faiss trains the codes only
        codes.quantizer.add(coarse.centroids)
    # 64 points per code centroid are plenty for k-means in a few dimensions; faiss's 256 take many
    # minutes per million passages on two cores.
    codes.pq.cp.max_points_per_centroid = _TRAINING_POINTS_PER_CLUSTER
    codes.train(np.ascontiguousarray(sample, dtype=np.float32))
    if not spec.rerank:
        return codes
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    refine = faiss.IndexRefine(codes, exact)  # faiss's Python wrapper keeps both parts alive with it
    refine.k_factor = spec.rerank
    return refine


def _pairs(keys: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
    return [(int(key), float(score)) for key, score in zip(keys, scores, strict=True) if key >= 0]


def _ranked(scores: np.ndarray, keys: np.ndarray) -> list[list[tuple[int, float]]]:
    """faiss's (scores, keys) rows as (key, score) lists, without the -1 keys of rows it could not fill."""
    return [_pairs(row_keys, row_scores) for row_keys, row_scores in zip(keys, scores, strict=True)]


def _rerank(
    exact: tuple[np.ndarray, np.ndarray, np.ndarray], query: np.ndarray, shortlist: np.ndarray, k: int
) -> list[tuple[int, float]]:
    """The k best keys of `shortlist` by the exact cosine with `query`; `exact` as `_rows_of_exact`."""
    if not len(shortlist):
        return []
    stored, sorted_keys, row_of = exact
    # einsum's own loop: a BLAS product this small costs more in waking BLAS threads than in arithmetic.
    cosines = np.einsum("ij,j->i", stored[row_of[np.searchsorted(sorted_keys, shortlist)]], query)
    best = np.argsort(-cosines, kind="stable")[:k]
    return _pairs(shortlist[best], cosines[best])


def _resolve_ivfpq(spec: IvfPqSpec, count: int, dimension: int) -> IvfPqSpec:
    if count < 2**spec.nbits:
        raise KotaeError(
            f"an IVF-PQ index with nbits={spec.nbits} needs at least {2**spec.nbits} passages to train, "
            f"this corpus has {count}: use --type flat, or --param nbits=N with 2**N ≤ {count}"
        )
    # faiss wants about 39 training points per cluster; 4·√n clusters is its usual advice.
    nlist = spec.nlist or max(1, min(int(4 * math.sqrt(count)), count // 39))
    m = spec.m or max(c for c in range(1, max(dimension // 4, 1) + 1) if dimension % c == 0)
    if dimension % m:
        raise KotaeError(f"IVF-PQ m={m} must divide the embedding dimension {dimension}")
    if count < nlist:
        raise KotaeError(f"IVF-PQ nlist={nlist} is more clusters than passages ({count})")
    return spec.model_copy(update={"nlist": nlist, "m": m})


def _training_rows(count: int, spec: IvfPqSpec) -> np.ndarray:
    """Row numbers of the training sample, sorted. k-means needs tens of points per cluster, not millions:
    a sample keeps training minutes short. The same corpus always gives the same sample."""
    wanted = max(
        _TRAINING_POINTS_PER_CLUSTER * (spec.nlist or 1), _TRAINING_POINTS_PER_CLUSTER * 2**spec.nbits
    )
    if count <= wanted:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, wanted, replace=False))
