"""Assembles what `kotae ask`, `kotae serve` and `kotae eval` run on, from `Settings` alone.

With no configuration this is the embedded default: the default models pulled on first use, the demo
corpus indexed on first use, and the adapters shipped in `adapters/trained/`.
"""

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from kotae.adapters.catalog import AdapterCatalog, ServedBase
from kotae.core.config import Settings
from kotae.demo import corpus_path
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.manifest import FORMAT_VERSION, read_manifest
from kotae.models.quantized import read_quantize_record
from kotae.models.store import ModelStore, model_hash
from kotae.rag.collections import Collections
from kotae.rag.engine import VLLMEngine, configure_vllm_environment, unserved_architecture
from kotae.rag.engine_process import start_engine_fork_server
from kotae.rag.engine_protocol import Engine, UnknownAdapter
from kotae.rag.pipeline import Pipeline
from kotae.rag.reranker import Reranker
from kotae.rag.retriever import Retriever
from kotae.rag.scheduler_limits import Workload
from kotae.rag.search_process import SearchProcess

logger = logging.getLogger(__name__)


DEMO_CORPUS_STAMP = "demo-corpus.sha256"
"""File in the demo index naming the corpus it was built from: another shipped corpus rebuilds it."""


def index_path(settings: Settings, embedder: Embedder) -> Path:
    """The configured index, or the demo index (built on first use, rebuilt when the corpus changed)."""
    if settings.index is not None:
        return settings.index
    corpus = corpus_path()
    # A new index format rebuilds it too: the stamp names the format it was built in.
    digest = f"{hashlib.sha256(corpus.read_bytes()).hexdigest()} format {FORMAT_VERSION}"
    stamp = settings.demo_index / DEMO_CORPUS_STAMP
    if not (stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest):
        build_index([corpus], settings.demo_index, embedder)
        stamp.write_text(digest + "\n", encoding="utf-8")
    return settings.demo_index


def open_retriever(settings: Settings) -> Retriever:
    """The default collection's retriever, with the configured reranker if any (every collection, the
    server, `kotae ask` and `kotae eval` then share it)."""
    embedder = Embedder(ModelStore(settings.home).embedder(settings.embedder))
    reranker = Reranker(Path(settings.reranker).expanduser()) if settings.reranker else None
    return Retriever(Index.open(index_path(settings, embedder)), embedder, settings, reranker=reranker)


def configure_engine(model: Path, settings: Settings, workload: Workload = "serve") -> Callable[[], Engine]:
    """`start_engine` in two halves: what takes this process's interpreter now (vLLM's imports and
    configuration), and the returned call, which launches the engine and waits until it is ready."""
    if settings.replicas:
        from kotae.rag.remote_engine import RemoteEngine

        return partial(RemoteEngine.start, model, settings)
    unknown = unserved_architecture(model, settings)
    if unknown is None:
        logger.info("engine: vLLM")
        return VLLMEngine.configure(model, settings, workload=workload).launch
    from kotae.rag.transformers_engine import TransformersEngine

    logger.info("engine: transformers (vLLM does not serve %s)", unknown)
    return partial(TransformersEngine.start, model, settings)


def start_engine(model: Path, settings: Settings, workload: Workload = "serve") -> Engine:
    """The replicas of `Settings.replicas` (which still need `model`'s tokenizer here), else vLLM in this
    process scheduled for `workload`, else, for an architecture vLLM does not serve, transformers in this
    process."""
    return configure_engine(model, settings, workload)()


def open_collections(settings: Settings) -> Collections:
    """The default collection and every index under the collections root."""
    return Collections.open(open_retriever(settings), settings.collections_root)


def build_pipeline(settings: Settings, workload: Workload = "serve") -> Pipeline:
    """The engine is configured first, then the collections open in a worker thread while it launches: on
    a GPU machine each takes tens of seconds (the embedder and CUDA here, vLLM's own process there) and
    neither needs the other. The configuration comes first because it takes the interpreter (vLLM's
    imports), which the collections' imports would share; the launch mostly waits. A configured index's
    manifest is read first of all, so a missing or unreadable index fails before the engine starts; one
    that fails to open later stops the started engine. An engine that builds its model in this process
    (transformers) starts after the collections: loading a model patches torch for the whole process.

    Before any of that, the fork server that vLLM's engine core will be forked from starts importing vLLM
    (`kotae.rag.engine_process`), beside this process's own imports."""
    if not settings.replicas:
        configure_vllm_environment(settings)
        start_engine_fork_server()
    if settings.index is not None:
        read_manifest(settings.index)
    model = ModelStore(settings.home).generator(settings.generator)
    apart = workload == "serve" and settings.serve_retrieval_process
    if builds_model_here(model, settings):
        collections, search = open_collections_for(settings, apart)
        return searching(Pipeline(collections, start_engine(model, settings, workload), settings), search)
    launch = configure_engine(model, settings, workload)
    with ThreadPoolExecutor(1, thread_name_prefix="open-collections") as pool:
        opening = pool.submit(open_collections_for, settings, apart)
        engine = launch()
        try:
            collections, search = opening.result()
        except BaseException:
            engine.shutdown()
            raise
    return searching(Pipeline(collections, engine, settings), search)


def open_collections_for(settings: Settings, apart: bool) -> tuple[Collections, SearchProcess | None]:
    """The collections, and with `apart` a search process that opens them again (`searching`): started once
    they are open here, on the same default index (the demo index built here, not twice at once)."""
    collections = open_collections(settings)
    if not apart:
        return collections, None
    default = settings.model_copy(update={"index": collections.default.index.directory})
    return collections, SearchProcess.start(open_collections, default)


def searching(pipeline: Pipeline, search: SearchProcess | None) -> Pipeline:
    """`pipeline` ranking in `search` (once its collections are open there), which follows every write to
    the pipeline's collections. A search process that fails to start stops the pipeline's engine."""
    if search is not None:
        try:
            search.wait_ready()
        except BaseException:
            search.close()
            pipeline.engine.shutdown()
            raise
        pipeline.collections.changed = search.refresh
        pipeline.search_process = search
    return pipeline


def builds_model_here(model: Path, settings: Settings) -> bool:
    """Whether `start_engine` builds the model in this process: transformers does, for an architecture vLLM
    does not serve; vLLM and the replicas build theirs in processes of their own."""
    return not settings.replicas and unserved_architecture(model, settings) is not None


def served_base(name: str, folder: Path | None) -> ServedBase:
    """The served model's name, content hash and, for a `kotae quantize` output, its source's hash
    (adapters trained by kotae record the hash of their base). Without a hash, adapters are matched on
    the base model's folder name only."""
    if folder is None:
        return ServedBase(name=name, hash=None)
    try:
        digest = model_hash(folder)
    except OSError as error:
        logger.warning("served model not hashed (%s): adapters are matched on its name only", error)
        return ServedBase(name=name, hash=None)
    record = read_quantize_record(folder)
    if record is None or record.model_hash is None:
        return ServedBase(name=name, hash=digest)
    if record.keeps_activations:
        return ServedBase(name=name, hash=digest, quantized_from=record.model_hash)
    return ServedBase(name=name, hash=digest, rescaled_from=(record.model_hash, record.method))


async def load_adapters(pipeline: Pipeline, settings: Settings) -> AdapterCatalog:
    """Every valid adapter under the adapter root, loaded into the pipeline's engine (invalid ones are
    logged); the pipeline then writes each adapter's prompts in the format it was trained in."""
    engine = pipeline.engine
    base = await asyncio.to_thread(served_base, engine.model_name, engine.model_path)
    catalog = AdapterCatalog(settings.adapter_dir, engine, base)
    await catalog.load_root()
    pipeline.prompt_format_of = catalog.prompt_format
    return catalog


async def load_default_adapters(pipeline: Pipeline, settings: Settings, requested: str | None) -> str | None:
    """Load the adapters under the adapter root; the adapter to answer with: `requested` if given ("" is
    the base model), else the configured default when it loaded, else the base model (None)."""
    catalog = await load_adapters(pipeline, settings)
    if requested == "":
        return None
    if requested is not None:
        if not catalog.is_loaded(requested):
            # Before any question is asked: an eval would otherwise retrieve for every question first.
            loaded = ", ".join(spec.name for spec in catalog.loaded()) or "none"
            raise UnknownAdapter(
                f"adapter {requested!r} is not loaded; loaded from {settings.adapter_dir}: {loaded} "
                f"('' asks the base model)"
            )
        return requested
    default = settings.default_adapter
    return default if default and catalog.is_loaded(default) else None
