"""Query embeddings on CUDA from CUDA graphs captured at load: a batch of questions is one copy in, one
replay and one copy out, where the eager encoder launches a few hundred kernels from Python.

Each eager PyTorch call lets go of the interpreter lock while it runs and takes it back after. In a server
whose other threads run Python (the event loop, BM25, the engine's outputs), each taking back can wait for a
thread switch interval (5 ms by default), so a forward of a few hundred calls can take a hundred times its
GPU time. A replay takes the lock back once."""

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GRAPH_ROWS = (1, 2, 4, 8, 16, 32, 64)
"""Questions a graph embeds: a batch is padded with empty rows to the next of these. The largest is the
server's retrieval batch (`rag.pipeline.RETRIEVAL_BATCH`) and the eval's default."""
GRAPH_LENGTHS = (16, 32, 48, 64, 96, 128)
"""Tokens a graph's rows hold, the prompt and special tokens included: a batch is padded to the next of
these. A Japanese question is 15–40 tokens; a batch with a longer one runs the eager encoder."""


def graph_shape(
    rows: int,
    length: int,
    graph_rows: Sequence[int] = GRAPH_ROWS,
    graph_lengths: Sequence[int] = GRAPH_LENGTHS,
) -> tuple[int, int] | None:
    """The smallest captured (rows, length) that holds `rows` texts of at most `length` tokens; None when
    none does."""
    fitting_rows = [size for size in graph_rows if size >= rows]
    fitting_lengths = [size for size in graph_lengths if size >= length]
    if rows < 1 or not fitting_rows or not fitting_lengths:
        return None
    return min(fitting_rows), min(fitting_lengths)


def padded_inputs(ids: Sequence[Sequence[int]], rows: int, length: int, pad_id: int) -> np.ndarray:
    """[2, rows, length] int64: the texts' token ids right-padded with `pad_id`, then their attention mask.
    Rows beyond the texts hold one pad token each, so that no row of the graph attends to nothing."""
    inputs = np.zeros((2, rows, length), np.int64)
    inputs[0] = pad_id
    inputs[1, len(ids) :, 0] = 1
    for row, tokens in enumerate(ids):
        inputs[0, row, : len(tokens)] = tokens
        inputs[1, row, : len(tokens)] = 1
    return inputs


class QueryGraphs:
    """One CUDA graph per (rows, length) of `GRAPH_ROWS` × `GRAPH_LENGTHS`, each running a
    sentence-transformers model on its own input buffer and L2-normalizing into its own output; all of them
    share one memory pool, sized by the largest (captured first)."""

    def __init__(
        self,
        model: Any,
        features: dict[str, Any],
        pad_id: int,
        graph_rows: Sequence[int] = GRAPH_ROWS,
        graph_lengths: Sequence[int] = GRAPH_LENGTHS,
    ) -> None:
        """`model`: a sentence-transformers model already on its CUDA device, in its dtype. `features` go to
        it with every batch, as the eager path sends them (their values are fixed at capture)."""
        import torch

        self.rows, self.lengths = tuple(sorted(graph_rows)), tuple(sorted(graph_lengths))
        self._pad_id = pad_id
        self._graphs: dict[tuple[int, int], tuple[Any, Any, Any]] = {}
        device = next(model.parameters()).device
        began = time.perf_counter()
        free_before = torch.cuda.mem_get_info(device)[0]

        def forward(inputs: "torch.Tensor") -> "torch.Tensor":
            batch = {**features, "input_ids": inputs[0], "attention_mask": inputs[1]}
            return torch.nn.functional.normalize(model(batch)["sentence_embedding"].float(), dim=-1)

        pool = None
        # Each shape is warmed up outside its capture (cuBLAS's handles and workspaces, kernel choices), on a
        # side stream, as torch's documentation asks.
        side = torch.cuda.Stream(device)
        with torch.inference_mode():
            for rows in reversed(self.rows):
                for length in reversed(self.lengths):
                    inputs = torch.from_numpy(padded_inputs([[pad_id]] * rows, rows, length, pad_id)).to(
                        device
                    )
                    side.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(side):
                        forward(inputs)
                    torch.cuda.current_stream(device).wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    # Thread-local: another thread's CUDA work while this one captures is not an error.
                    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                        output = forward(inputs)
                    pool = graph.pool()
                    self._graphs[rows, length] = graph, inputs, output
            torch.cuda.synchronize(device)
        self.capture_s = time.perf_counter() - began
        self.memory_bytes = free_before - torch.cuda.mem_get_info(device)[0]
        """GPU memory the graphs took at capture (their pool, inputs and outputs)."""
        log.info(
            "query embedding: %d CUDA graphs captured in %.1f s, %.0f MiB of GPU memory (up to %d questions "
            "of %d tokens a batch)",
            len(self._graphs),
            self.capture_s,
            self.memory_bytes / 2**20,
            self.rows[-1],
            self.lengths[-1],
        )

    def embed(self, ids: Sequence[Sequence[int]]) -> np.ndarray | None:
        """[len(ids), dimension] float32 embeddings of the tokenized texts, in their order; None when no
        graph holds them (more texts or longer ones than any graph). One caller at a time."""
        import torch

        shape = graph_shape(
            len(ids), max((len(tokens) for tokens in ids), default=0), self.rows, self.lengths
        )
        if shape is None:
            return None
        graph, inputs, output = self._graphs[shape]
        with torch.inference_mode():
            inputs.copy_(torch.from_numpy(padded_inputs(ids, *shape, self._pad_id)))
            graph.replay()
            return output[: len(ids)].cpu().numpy()
