"""Questions embedded from captured CUDA graphs: the shapes a batch is padded to, its padded inputs, and on a
CUDA machine (the GPU lease) the same vectors as the eager encoder's."""

from pathlib import Path

import numpy as np
import pytest

from kotae.core.config import Settings
from kotae.indexer.embedder import Embedder
from kotae.indexer.query_graphs import GRAPH_LENGTHS, GRAPH_ROWS, graph_shape, padded_inputs

QUESTIONS = ["日本で一番高い山は？", "東京タワーの高さは何メートルですか？", "富士山はどこにありますか？"]


def test_a_batch_takes_the_smallest_graph_that_holds_it() -> None:
    assert graph_shape(1, 9) == (1, 16)
    assert graph_shape(3, 16) == (4, 16)
    assert graph_shape(3, 17) == (4, 32)
    assert graph_shape(GRAPH_ROWS[-1], GRAPH_LENGTHS[-1]) == (GRAPH_ROWS[-1], GRAPH_LENGTHS[-1])


def test_the_largest_graph_holds_a_served_batch_and_an_eval_batch() -> None:
    from kotae.rag.pipeline import RETRIEVAL_BATCH

    assert GRAPH_ROWS[-1] >= max(RETRIEVAL_BATCH, Settings().eval_retrieval_batch)


def test_a_batch_no_graph_holds_runs_eagerly() -> None:
    assert graph_shape(GRAPH_ROWS[-1] + 1, 10) is None
    assert graph_shape(2, GRAPH_LENGTHS[-1] + 1) is None
    assert graph_shape(0, 10) is None


def test_padded_inputs_hold_the_ids_then_the_mask_and_no_empty_row() -> None:
    inputs = padded_inputs([[5, 6, 7], [8]], rows=4, length=5, pad_id=1)
    assert inputs.shape == (2, 4, 5) and inputs.dtype == np.int64
    np.testing.assert_array_equal(inputs[0], [[5, 6, 7, 1, 1], [8, 1, 1, 1, 1], [1] * 5, [1] * 5])
    np.testing.assert_array_equal(
        inputs[1], [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]
    )


def test_graphs_are_on_by_default_and_only_on_cuda(tiny_e5: Path) -> None:
    assert Settings().embedder_cuda_graphs
    assert Embedder(tiny_e5, device="cpu", backend="torch", precision="fp32").query_graphs is None


cuda = pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="CUDA graphs need a CUDA device (the GPU lease)"
)


@cuda
def test_graphs_embed_as_the_eager_encoder_does(tiny_e5: Path) -> None:
    graphed = Embedder(tiny_e5, device="cuda", backend="torch", precision="fp32", cuda_graphs=True)
    eager = Embedder(tiny_e5, device="cuda", backend="torch", precision="fp32", cuda_graphs=False)
    assert graphed.query_graphs is not None and eager.query_graphs is None
    for questions in (QUESTIONS[:1], QUESTIONS, QUESTIONS * 20, ["長い質問" * 200]):
        np.testing.assert_allclose(
            graphed.embed_queries(questions), eager.embed_queries(questions), atol=1e-5
        )


@cuda
def test_a_compiled_embedder_captures_no_graphs(tiny_e5: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import torch

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))  # no inductor
    compiled = Embedder(
        tiny_e5, device="cuda", backend="torch", precision="fp32", compiled=True, cuda_graphs=True
    )
    assert compiled.query_graphs is None


def test_graphs_that_cannot_be_captured_leave_questions_to_the_eager_encoder(
    tiny_e5: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cpu = Embedder(tiny_e5, device="cpu", backend="torch", precision="fp32")
    assert cpu._capture_query_graphs(cpu._model) is None  # no CUDA device to capture on
    assert "without CUDA graphs" in caplog.text
