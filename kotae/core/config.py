"""The one place kotae reads its configuration: environment variables `KOTAE_*` or a `.env` file."""

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_GENERATOR = "gemma-3-270m"
DEFAULT_EMBEDDER = "multilingual-e5-small"
DEFAULT_TOP_K = 3
"""Passages per prompt, served and trained on: with the default adapter, 3 answer better than 5 on both dev
sets, in fewer prompt tokens (docs/RESULTS.md)."""
DEFAULT_CONTEXT_TOKEN_BUDGET = 1536
"""Prompt tokens the passages may take, served and trained on."""
RetrievalMode = Literal["dense", "bm25", "hybrid"]
FusionMethod = Literal["rrf", "weighted"]
# Spelled out rather than imported from kotae.indexer.embedding_backends, which the settings must not depend
# on (tests/rag/test_embedder_backends.py checks that the two agree).
EmbedderBackend = Literal["auto", "torch", "openvino"]
EmbedderPrecision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


def _shipped_adapters() -> Path:
    """`adapters/trained/`: package data of kotae.adapters, found without importing that package (settings
    sit below every other layer)."""
    spec = importlib.util.find_spec("kotae.adapters")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "trained"


class Settings(BaseSettings):
    """Every knob of kotae. Each field is read from `KOTAE_<FIELD>` (e.g. `KOTAE_TOP_K=8`)."""

    model_config = SettingsConfigDict(env_prefix="KOTAE_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".cache" / "kotae")
    """Where pulled models and built indexes live."""

    generator: str = DEFAULT_GENERATOR
    """Generator: a name in the model store or a path to a local Hugging Face model folder."""
    embedder: str = DEFAULT_EMBEDDER
    """Embedder: a name in the model store or a path to a sentence-transformers folder."""
    embedder_backend: EmbedderBackend = "auto"
    """What runs the embedder: `openvino` (CPU only; the model is converted once per weights and kept
    beside the embedder in the model store), `torch`, or `auto`: OpenVINO on a CPU (torch where it is not
    installed or cannot convert the model), torch on CUDA."""
    embedder_precision: EmbedderPrecision = "auto"
    """The embedder's arithmetic: `auto` is fp16 for torch on CUDA, fp32 for torch on a CPU, and for
    OpenVINO int8 where the CPU has int8 dot products (VNNI, AMX; quantized once by NNCF, calibrated on the
    demo corpus), else bf16 where it computes bf16 natively (AVX-512 BF16, AMX), else fp32."""
    embedder_compile: bool = False
    """Run the embedder's encoder through `torch.compile` (torch backend): fused kernels, faster on CUDA;
    loading the embedder takes about a minute longer, since it compiles for every batch size then."""
    embedder_cuda_graphs: bool = True
    """Embed questions on CUDA by replaying CUDA graphs captured when the embedder loads (torch backend, not
    compiled), one for each batch of up to 64 questions of up to 128 tokens: a batch is one replay where the
    eager encoder makes a few hundred calls, each of which waits for the interpreter while the server's
    other threads run Python. Larger batches and longer questions run eagerly."""
    index: Path | None = None
    """Index directory to serve as the `default` collection; unset means the embedded demo index under
    `home`."""
    collections_dir: Path | None = None
    """Root of the other collections: each folder in it that holds an index is served as the collection
    of the folder's name (`kotae index build --collection NAME` builds there). Unset: `collections` under
    `home`."""
    index_watch_s: float = Field(2.0, ge=0)
    """Seconds between checks for collections rebuilt or updated on disk, which are then served without a
    restart (requests in flight finish on the old index); 0 turns the watch off (reload through
    `POST /v1/collections/{name}/reload`)."""

    adapter_dir: Path = Field(default_factory=_shipped_adapters)
    """Adapters under this root load at start; run-time loads must stay inside it."""
    default_adapter: str | None = "default"
    """Adapter that answers when a request names none (if loaded); empty string for the base model."""

    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=50)
    """Passages put into the prompt."""
    retrieval: RetrievalMode = "hybrid"
    """Dense (faiss), lexical (BM25 over Sudachi tokens) or both fused."""
    fusion: FusionMethod = "weighted"
    """How hybrid retrieval fuses the two rankings: weighted scores recall more than reciprocal ranks on
    JSQuAD and JaQuAD (docs/BENCHMARKS.md, Retrieval)."""
    fusion_dense_weight: float = Field(0.4, ge=0.0, le=1.0)
    """Weight of the dense scores in weighted fusion (BM25 gets the rest); the default recalls best
    (docs/BENCHMARKS.md, Retrieval)."""
    reranker: str | None = None
    """Cross-encoder folder (`kotae train reranker` writes one) that re-orders hybrid retrieval's fused
    candidates by its score of each (question, passage) pair; unset: no re-ranking. Dense and BM25
    retrieval are never re-ranked: they stay the single rankings that hybrid is measured against."""
    rerank_depth: int = Field(50, ge=1, le=200)
    """Fused candidates per question that the reranker scores; any passages asked for beyond them follow
    in fused order."""
    search_threads: int = Field(4, ge=0)
    """Most threads faiss spreads one batch of questions' dense search over; 0: every core. A team waits
    for its slowest thread, and beside an engine, a server and BM25 that hold cores, a team of every core
    waits longest (docs/BENCHMARKS.md, session 46). Raise it for batch evals over a large IVF-PQ index on
    an idle machine."""
    context_token_budget: int = Field(DEFAULT_CONTEXT_TOKEN_BUDGET, ge=64)
    """Prompt tokens the retrieved passages may take; the last passages are trimmed to fit."""
    abstain_min_cosine: float = Field(0.81, ge=0.0, le=1.0)
    """Abstention gate: when no passage of the collection has at least this cosine similarity to the
    question (dense embeddings), kotae answers 「資料には答えが見つかりません。」 with `answerable: false`
    without asking the model. The default is calibrated for multilingual-e5-small (docs/RESULTS.md,
    Abstention); set it anew for another embedder. 0 turns the gate off (the model may still abstain)."""

    eval_retrieval_batch: int = Field(64, ge=0)
    """Questions an in-process `kotae eval` retrieves per batch. Each batch's prompts go to the engine as
    soon as the batch is retrieved, while the next one is retrieved, so generation starts after the first
    batch rather than after every question's retrieval. 0: all questions in one batch, then generation (no
    overlap; the answers are the same)."""
    eval_switch_interval_ms: float = Field(1.0, ge=0)
    """Python's thread switch interval while an in-process `kotae eval` retrieves, restored when retrieval
    ends. The retrieval thread shares the interpreter with the event loop that carries the engine's outputs;
    faiss, BM25, SQLite and Sudachi hand the interpreter back inside their calls, and at Python's default
    (5 ms) each return can wait that long behind the loop. 0 keeps Python's default."""
    eval_retrieval_process: bool | None = None
    """Whether an in-process `kotae eval` (with retrieved contexts) ranks its questions in a process of its
    own, which opens the default collection's retriever again (its index and query embedder) while the
    engine starts. Beside the engine, the retrieval and the event loop that feeds the engine and takes its
    outputs share one interpreter, and each slows the other. None: where vLLM runs on a GPU; on a CPU the
    engine, not its feed, bounds an eval, and the second retriever would cost memory and a start."""

    max_tokens: int = Field(64, ge=1)
    """Answer tokens when a request does not say."""
    max_tokens_cap: int = Field(512, ge=1)
    """Largest `max_tokens` a request may ask for."""
    max_question_chars: int = Field(2000, ge=1)
    """Longest question accepted (characters)."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Largest HTTP request body accepted."""

    max_model_len: int = Field(4096, ge=256)
    """vLLM context length."""
    kv_cache_gib: float = Field(2.0, gt=0)
    """KV cache size on CPU (GiB, fractions too), taken from memory when the engine starts; on a GPU see
    `gpu_memory_utilization`."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """Share of the GPU's memory vLLM may take. Unset: vLLM gets a KV cache sized to the model and the
    workload's concurrency instead (`kv_cache_memory_bytes`: `max_num_seqs` sequences of a full prompt plus
    `max_tokens`, in the model's KV bytes per token), beside the weights, adapters and activations it
    measures itself; kotae logs what it reserved and why. The rest of the card stays free for other
    processes."""
    max_loras: int = Field(4, ge=1)
    """Adapters one batch may mix."""
    max_num_seqs: int | None = Field(None, ge=1)
    """Sequences vLLM batches per step, for every workload; unset: `serve_max_num_seqs` or
    `batch_max_num_seqs` on a GPU, vLLM's defaults for its own OpenAI server on a CPU. The transformers
    engine's largest batch (32 when unset)."""
    max_num_batched_tokens: int | None = Field(None, ge=1)
    """Tokens vLLM schedules per step (prefill chunks included), for every workload; unset:
    `serve_max_num_batched_tokens` or `batch_max_num_batched_tokens` on a GPU, vLLM's server defaults
    on a CPU."""
    serve_max_num_seqs: int = Field(256, ge=1)
    """On a GPU, sequences per step when kotae serves: the requests a server has in flight fit with room to
    spare, and vLLM captures CUDA graphs only up to this batch size, so the engine starts sooner than with
    vLLM's 1,024."""
    serve_max_num_batched_tokens: int = Field(8192, ge=1)
    """On a GPU, tokens per step when kotae serves: a step holds a few new prompts' prefill beside every
    running answer's next token, so answers in progress are never held up by a long prefill (the bound on
    time between tokens, and so on p99 latency). vLLM's own server uses the same on an H100/H200."""
    batch_max_num_seqs: int = Field(1024, ge=1)
    """On a GPU, sequences per step when kotae runs a batch (`kotae eval` in process): a thousand-question
    batch is admitted at once, so its answers decode together in one step each."""
    batch_max_num_batched_tokens: int = Field(65536, ge=1)
    """On a GPU, tokens per step when kotae runs a batch: nobody waits for a single answer, so each step
    prefills as many prompts as fit (about 90 of kotae's prompts), and a thousand prompts take a dozen
    large steps instead of a hundred small ones, which keeps a small model's GPU busy."""
    batch_prefix_caching: bool = False
    """On a GPU, whether vLLM keeps a batch's prompt blocks for reuse (its prefix cache), as it does when
    kotae serves (chats repeat their history, users their questions). Off: an eval's prompts begin alike only
    for the instruction's first two 16-token blocks of some 720 tokens, while hashing and keeping every block
    held the engine core's loop, which paces a small model on a GPU, for about 0.35 s of each 2.1 s pass over
    980 prompts."""
    max_lora_rank: int = Field(64, ge=1)
    """Largest LoRA rank the engine accepts; bigger adapters are refused at load."""
    quantization: str | None = None
    """Passed to vLLM (`None` lets vLLM read it from the model's config)."""
    replicas: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Base URLs of vLLM OpenAI servers (`vllm serve`, each may be tensor-parallel) that generate instead
    of an in-process engine, comma-separated: `KOTAE_REPLICAS=http://h1:8001,http://h2:8002`. Each
    serves the generator (`--served-model-name` = the name adapters were trained on) with
    `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, and reads the adapter root at the path
    kotae reads it. Empty: vLLM runs inside kotae. kotae still reads the generator's tokenizer."""
    replica_health_interval_s: float = Field(5.0, gt=0)
    """Seconds between `/health` probes of every replica: two failed in a row take it out of rotation (one
    slow answer on a loaded host is no outage, nor a timeout while it streams answers); a failed replica
    rejoins at the first probe it passes, once the adapters it lacks are loaded into it."""
    replica_timeout_s: float = Field(600.0, gt=0)
    """Longest a replica may stay silent in a request (queueing included) before it counts as failed."""
    replica_start_timeout_s: float = Field(600.0, gt=0)
    """How long start-up waits for a first replica to answer (replicas may still be loading the model)."""
    quant_python: str | None = None
    """Interpreter that runs `kotae quantize`'s llm-compressor worker; unset: kotae's own."""
    quant_site: Path | None = None
    """Folder put first on that worker's PYTHONPATH (llm-compressor and its pins); unset with kotae's own
    interpreter: `quant-site` in kotae's environment, which scripts/bootstrap.sh fills."""

    host: str = "127.0.0.1"
    """Address `kotae serve` binds; never all interfaces unless told."""
    port: int = Field(8000, ge=0, le=65535)
    """Port `kotae serve` listens on; 0 lets the system pick a free one."""
    admin_token: SecretStr | None = None
    """Bearer token for the admin routes (adapters, collections); unset disables them."""
    api_keys: SecretStr | None = None
    """Keys for the query routes (`/v1/qa`, chat), sent as `Authorization: Bearer KEY`, each with the
    collections it may read: `KEY:COLLECTION[+COLLECTION...]` pairs, comma-separated, `*` for all
    (`k1:*,k2:manuals+hr`), or the path of a JSON file mapping each key to a list of collections. Unset:
    the query routes are open."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS; empty keeps CORS off."""
    shutdown_grace_s: float = Field(60.0, ge=0)
    """On SIGTERM `kotae serve` stops accepting and lets in-flight requests finish for at most this long."""
    serve_retrieval_process: bool = False
    """Whether `kotae serve` ranks its retrieval batches in a process of its own, which opens the collections
    a second time (the indexes' vectors and BM25 arrays are mapped from their files, one copy for both
    processes) and reads each collection again after the server writes to it. In the server, the retrieval
    thread shares the interpreter with the event loop that carries every request and the engine's outputs."""
    serve_switch_interval_ms: float = Field(0.0, ge=0)
    """Python's thread switch interval while `kotae serve` runs. Its retrieval batches run one after another
    in a thread beside the event loop that carries requests and the engine's outputs, and each return from
    faiss, BM25, SQLite, Sudachi or the GPU can wait this long for the interpreter. 0 keeps Python's default
    (5 ms)."""

    @field_validator("replicas", mode="before")
    @classmethod
    def _split_replicas(cls, value: object) -> object:
        """A comma-separated string (as the environment gives it) or a list; URLs without a trailing
        `/` or `/v1`, so that both a server's address and its OpenAI base URL work."""
        urls = value.split(",") if isinstance(value, str) else value
        if not isinstance(urls, list):
            return value
        cleaned = [str(url).strip().rstrip("/").removesuffix("/v1") for url in urls if str(url).strip()]
        for url in cleaned:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"replica {url!r} is not an http:// or https:// URL")
        return cleaned

    @property
    def indexes_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def demo_index(self) -> Path:
        return self.indexes_dir / "demo"

    @property
    def collections_root(self) -> Path:
        return self.collections_dir or self.home / "collections"


@lru_cache
def get_settings() -> Settings:
    return Settings()
