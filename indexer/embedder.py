"""Sentence embeddings for retrieval: a sentence-transformers folder, loaded offline, run by the backend the
settings choose (OpenVINO on a CPU, PyTorch fp16 on CUDA by default) on length-sorted, token-budgeted
batches; on CUDA, questions by replaying CUDA graphs."""

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kotae.core.errors import KotaeError
from kotae.indexer import batching
from kotae.indexer.embedding_backends import (
    Choice,
    OpenVinoRunner,
    TorchRunner,
    demo_calibration_texts,
    openvino_model,
    resolve,
)
from kotae.indexer.query_graphs import QueryGraphs
from kotae.models.store import ModelStore, model_hash

log = logging.getLogger(__name__)

PASSAGE_PROMPT = "passage"
QUERY_PROMPT = "query"


WARM_UP_QUERY = "日本で一番高い山は？"
"""Embedded once at load."""


class Embedder:
    """Normalized float32 embeddings of passages and queries, with the prompts the folder configures
    (E5: "passage: " / "query: "); a folder without those prompts embeds texts as they are. One backend
    embeds both, so queries and passages always come from the same runtime and precision."""

    def __init__(
        self,
        folder: Path,
        device: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        cache_dir: Path | None = None,
        token_budget: int | None = None,
        compiled: bool | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        """`folder`: sentence-transformers (modules.json) or a plain encoder (config.json: mean pooling).
        `device`: None picks CUDA when torch sees a GPU, else CPU.
        `backend` ("auto", "torch", "openvino") and `precision` ("auto", "fp32", "bf16", "fp16", "int8"):
        None takes the settings' `embedder_backend` / `embedder_precision`; `embedding_backends.resolve`
        says what auto picks. An auto backend whose conversion fails falls back to torch (logged).
        `cache_dir`: where converted models are kept (default: the folder holding `folder`, i.e. the
        model store for a pulled model). `token_budget`: rows × padded length per batch (default: the
        backend's, larger on CUDA). `compiled`: run the torch encoder through `torch.compile` (None: the
        settings' `embedder_compile`). `cuda_graphs`: embed questions on CUDA by replaying CUDA graphs
        captured here (torch backend, not compiled; None: the settings' `embedder_cuda_graphs`)."""
        from sentence_transformers import SentenceTransformer

        if not any((folder / name).is_file() for name in ("modules.json", "config.json")):
            raise KotaeError(f"{folder}: not a model folder (no modules.json or config.json)")
        self.folder = folder
        self.name = folder.name
        """How manifests name the embedder: the store's model name, or the folder's name."""
        self.hash = model_hash(folder)
        """The model store's identity of the weights (its source file's sha256, or a fingerprint)."""
        configured_backend, configured_precision, configured_compile, configured_graphs = _configured(
            backend, precision, compiled, cuda_graphs
        )
        choice = resolve(configured_backend, configured_precision, device, configured_compile)
        load_on = "cpu" if choice.backend == "openvino" else choice.device
        model = SentenceTransformer(str(folder), device=load_on, local_files_only=True)
        self.dimension: int = model.get_embedding_dimension()
        prompts = model.prompts
        self.passage_prompt_name = PASSAGE_PROMPT if prompts.get(PASSAGE_PROMPT) else None
        self.query_prompt_name = QUERY_PROMPT if prompts.get(QUERY_PROMPT) else None
        self.passage_prompt = prompts.get(PASSAGE_PROMPT) or None
        self.query_prompt = prompts.get(QUERY_PROMPT) or None
        self._tokenizer, self._pad_id = _fast_tokenizer(model)
        self._special_ids = set(getattr(model.tokenizer, "all_special_ids", ()))
        self._pools_over_prompts = _pools_over_prompts(model)
        # Fast tokenizers fail with "Already borrowed" when two threads encode at once; an OpenVINO
        # request runs one batch at a time.
        self._lock = threading.Lock()
        self._cache_dir = cache_dir or folder.parent
        self._runner, self.choice = self._start(model, choice, configured_backend == "auto")
        self._token_budget = token_budget
        self._model = model if self.choice.backend == "torch" else None
        """The sentence-transformers model (torch backend only; OpenVINO runs its own copy)."""
        self._query_graphs: QueryGraphs | None = None
        if configured_graphs and self.choice.backend == "torch" and self.device.startswith("cuda"):
            if self.choice.compiled:
                log.info("the embedder is compiled: questions are embedded without CUDA graphs")
            else:
                self._query_graphs = self._capture_query_graphs(model)
        # The runtime's one-time set-up (a GPU's cuBLAS handles and kernel choice, compiled graphs) happens
        # here rather than in the first question's batch.
        self.embed_queries([WARM_UP_QUERY])
        if self.choice.compiled:
            # torch.compile specializes a batch of one row; its graph for any other count would otherwise
            # compile inside the first request that shares a batch, with every request queued behind it.
            self.embed_queries([WARM_UP_QUERY, WARM_UP_QUERY])

    @property
    def device(self) -> str:
        return self.choice.device

    @property
    def query_graphs(self) -> QueryGraphs | None:
        """The CUDA graphs that embed questions, when they do."""
        return self._query_graphs

    @property
    def backend(self) -> str:
        """What runs the model, e.g. "openvino-bf16" or "torch-fp16"."""
        return self.choice.label

    def embed_passages(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: bool = False,
        token_budget: int | None = None,
        token_ids: batching.TokenIds | None = None,
    ) -> np.ndarray:
        """One row per text, in input order. Batches are formed by token budget, not by count: `batch_size`
        is accepted for existing callers and not used; `token_budget` overrides the embedder's.
        `token_ids`: the texts as `passage_tokenizer()` tokenized them (in worker processes, say), so that
        they are not tokenized again here."""
        if token_ids is not None and len(token_ids) != len(texts):
            raise ValueError(f"{len(token_ids)} token id rows for {len(texts)} texts")
        return self._encode(texts, self.passage_prompt, progress, token_budget, token_ids)

    def embed_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """One row per question, in input order (`batch_size` is not used, as for passages). On CUDA, a
        batch that a captured graph holds is tokenized here and embedded by one replay."""
        if self._query_graphs is None or not texts:
            return self._encode(texts, self.query_prompt, False, None)
        prompt = self.query_prompt or ""
        with self._lock:
            ids = self._tokenize([prompt + text for text in texts])
            embedded = self._query_graphs.embed(ids)
        if embedded is not None:
            return embedded
        return self._encode(texts, self.query_prompt, False, None, batching.TokenIds.of(ids))

    def passage_tokenizer(self) -> "TextTokenizer":
        """What tokenizes passages exactly as `embed_passages` does, for another process."""
        return TextTokenizer(
            self._tokenizer.backend.to_str(), self._tokenizer.max_length, self.passage_prompt or ""
        )

    def _encode(
        self,
        texts: Sequence[str],
        prompt: str | None,
        progress: bool,
        token_budget: int | None,
        token_ids: batching.TokenIds | None = None,
    ) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), np.float32)
        if not texts:
            return out
        runner = self._runner
        shape = runner.batch_shape
        inputs: Sequence[Any]
        tokenize: batching.Tokenize
        if token_ids is None:
            inputs, tokenize = [prompt + text for text in texts] if prompt else list(texts), self._tokenize
        else:
            inputs, tokenize = range(len(texts)), lambda rows: [token_ids[row] for row in rows]
        features = self._features(prompt)
        with (
            self._lock,
            tqdm(total=len(texts), desc="embedding", unit=" texts", disable=not progress) as bar,
        ):
            for block in batching.blocks(
                inputs,
                tokenize,
                self._pad_id,
                token_budget=token_budget or self._token_budget or shape.token_budget,
                max_rows=shape.max_rows,
                multiple=shape.multiple,
                block_texts=shape.block_texts,
                prepare=runner.prepare,
            ):
                out[block.rows] = runner.run_block(block, features)
                bar.update(block.count)
        return out

    def _capture_query_graphs(self, model: Any) -> QueryGraphs | None:
        """The question batches' CUDA graphs; None (questions then run eagerly, logged) where this torch,
        transformers or model cannot be captured."""
        try:
            return QueryGraphs(model, self._features(self.query_prompt), self._pad_id)
        except Exception as error:
            log.warning("questions are embedded without CUDA graphs: capturing them failed (%s)", error)
            return None

    def _features(self, prompt: str | None) -> dict[str, Any]:
        """What the modules take with every batch of texts behind `prompt`, beside the tokens."""
        features: dict[str, Any] = {"modality": "text"}
        if prompt and not self._pools_over_prompts:
            features["prompt_length"] = self._prompt_length(prompt)
        return features

    def _prompt_length(self, prompt: str) -> int:
        """The prompt's tokens at the start of every text, as sentence-transformers counts them: the
        prompt tokenized alone, less a trailing special token."""
        [ids] = self._tokenize([prompt])
        return len(ids) - 1 if ids and ids[-1] in self._special_ids else len(ids)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self._tokenizer(texts)

    def _start(self, model: Any, choice: Choice, auto: bool) -> tuple[TorchRunner | OpenVinoRunner, Choice]:
        """The runner for `choice`; with an auto backend, torch on the CPU where OpenVINO cannot run it."""
        if choice.backend != "openvino":
            return TorchRunner(model, choice), choice
        try:
            if not self._pools_over_prompts:
                raise KotaeError(
                    f"{self.folder}: its pooling leaves the prompt out, which needs backend torch"
                )
            folder = openvino_model(
                model, self.hash, choice.precision, self._cache_dir, self.name, self._calibration
            )
            return OpenVinoRunner(folder, choice, self.dimension), choice
        except Exception as error:
            if not auto:
                raise
            log.warning("OpenVINO cannot run the embedder (%s): embedding with torch on the CPU", error)
        fallback = Choice("torch", "fp32", "cpu")
        return TorchRunner(model, fallback), fallback

    def _calibration(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """int8 calibration samples: the demo corpus's passages and questions, prompted as they are
        embedded, one text per sample."""
        passages, questions = demo_calibration_texts()
        texts = [(self.passage_prompt or "") + text for text in passages]
        texts += [(self.query_prompt or "") + text for text in questions]
        samples = []
        for ids in self._tokenize(texts):
            row = np.asarray([ids], np.int64)
            samples.append((row, np.ones_like(row)))
        return samples


class TextTokenizer:
    """Tokenizes texts as an embedder does (its prompt first, its truncation), in any process: it pickles
    as the tokenizer's JSON and builds the tokenizer again on first use."""

    def __init__(self, tokenizer_json: str, max_length: int, prompt: str) -> None:
        self.tokenizer_json, self.max_length, self.prompt = tokenizer_json, max_length, prompt
        self._tokenizer: batching.FastTokenizer | None = None

    def __getstate__(self) -> dict:
        return {"tokenizer_json": self.tokenizer_json, "max_length": self.max_length, "prompt": self.prompt}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __call__(self, texts: Sequence[str]) -> batching.TokenIds:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = batching.FastTokenizer(Tokenizer.from_str(self.tokenizer_json), self.max_length)
        return batching.TokenIds.of(self._tokenizer([self.prompt + text for text in texts]))


def _configured(
    backend: str | None, precision: str | None, compiled: bool | None, cuda_graphs: bool | None
) -> tuple[str, str, bool, bool]:
    """The settings' backend, precision, compilation and CUDA graphs where the caller gave none ("auto", no
    compilation and graphs where kotae's settings cannot be read, as on a GPU machine that has only the
    embedding dependencies)."""
    if backend is not None and precision is not None and compiled is not None and cuda_graphs is not None:
        return backend, precision, compiled, cuda_graphs
    try:
        from kotae.core.config import get_settings

        settings = get_settings()
        configured = (
            settings.embedder_backend,
            settings.embedder_precision,
            settings.embedder_compile,
            settings.embedder_cuda_graphs,
        )
    except ImportError:
        configured = "auto", "auto", False, True
    return (
        backend or configured[0],
        precision or configured[1],
        configured[2] if compiled is None else compiled,
        configured[3] if cuda_graphs is None else cuda_graphs,
    )


def _fast_tokenizer(model: Any) -> tuple[batching.FastTokenizer, int]:
    """The model's `tokenizers` pipeline with its truncation, without padding (batches are padded here),
    and its pad id."""
    tokenizer = model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise KotaeError("the embedder needs a fast (Rust `tokenizers`) tokenizer: its folder has none")
    pad_id = tokenizer.pad_token_id
    return batching.FastTokenizer(backend, model.max_seq_length), 0 if pad_id is None else int(pad_id)


def _pools_over_prompts(model: Any) -> bool:
    """Whether every pooling module averages over the prompt's tokens too (E5 does): a pooling that leaves
    them out needs the prompt's length at run time, which the converted graph does not take."""
    return all(getattr(module, "include_prompt", True) for module in model)


def load_embedder(
    name_or_path: str,
    home: Path,
    device: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    compiled: bool | None = None,
    cuda_graphs: bool | None = None,
) -> Embedder:
    """A sentence-transformers folder given by path, or a model of the store under `home` (the default
    embedder is pulled on first use: seconds). Converted models are kept in the store. The options are
    `Embedder`'s."""
    store = ModelStore(home)
    return Embedder(
        store.embedder(name_or_path),
        device=device,
        backend=backend,
        precision=precision,
        cache_dir=store.models_dir,
        compiled=compiled,
        cuda_graphs=cuda_graphs,
    )
