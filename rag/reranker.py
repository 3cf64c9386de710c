"""A cross-encoder that re-scores retrieved passages: the question and a passage read together give one
relevance score, sharper than comparing their separate embeddings (`kotae train reranker` trains one)."""

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.indexer.chunking import indexed_text

SCORE_BATCH = 64
"""(question, passage) pairs per forward pass: one question's 50 candidates fit in one."""


class PairScorer(Protocol):
    """What the retriever re-ranks with: one score per (question, passage) pair, higher is better."""

    def score(self, pairs: Sequence[tuple[str, Passage]]) -> list[float]: ...


class Reranker:
    """A sentence-transformers `CrossEncoder` folder with one output, loaded offline."""

    def __init__(
        self,
        folder: Path,
        device: str | None = None,
        batch_size: int = SCORE_BATCH,
        bf16: bool | None = None,
    ) -> None:
        """`device`: None picks CUDA when torch sees a GPU, else the CPU. `bf16`: score under bf16
        autocast (None: on CUDA only, where it halves the time a question's candidates take)."""
        from sentence_transformers import CrossEncoder
        from torch import nn

        if not (folder / "config.json").is_file():
            raise KotaeError(
                f"{folder}: not a reranker folder (no config.json); `kotae train reranker` writes one"
            )
        self.folder = folder
        self.batch_size = batch_size
        self.model = CrossEncoder(str(folder), device=device, local_files_only=True)
        self.bf16 = self.model.device.type == "cuda" if bf16 is None else bf16
        # Raw logits: the sigmoid a one-label CrossEncoder applies by default saturates, and ties at 1.0
        # would leave the best passages in fused order.
        self._activation = nn.Identity()
        # Fast tokenizers fail with "Already borrowed" when two threads encode at once, and collections
        # retrieve in threads of their own.
        self._lock = threading.Lock()

    def score(self, pairs: Sequence[tuple[str, Passage]]) -> list[float]:
        """The model's logit for each pair, the passage written as the embedder reads it (title first)."""
        if not pairs:
            return []
        import torch

        texts = [(question, indexed_text(passage)) for question, passage in pairs]
        autocast = torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with self._lock, autocast:
            scores = self.model.predict(
                texts, batch_size=self.batch_size, activation_fn=self._activation, show_progress_bar=False
            )
        return [float(score) for score in scores]
