"""The reranker scores (question, passage) pairs with a cross-encoder folder, in batches."""

from pathlib import Path

import pytest

from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.rag.reranker import Reranker

QUESTION = "日本一高い山は何か？"
PASSAGES = [
    Passage("p1", "富士山", "富士山は日本一高い山で、標高は3776メートルである。"),
    Passage("p2", "琵琶湖", "琵琶湖は滋賀県にある日本最大の湖である。"),
    Passage("p3", "屋久島", "屋久島は鹿児島県の島である。"),
]


def test_scores_one_float_per_pair_whatever_the_batch(tiny_reranker: Path) -> None:
    pairs = [(QUESTION, passage) for passage in PASSAGES]
    reranker = Reranker(tiny_reranker)

    together = reranker.score(pairs)
    reranker.batch_size = 1
    one_by_one = reranker.score(pairs)

    assert len(together) == 3 and all(isinstance(score, float) for score in together)
    assert together == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(together)) == 3  # the passage is read: different passages, different scores
    assert reranker.score([]) == []


def test_bf16_scores_are_the_fp32_ones_rounded_and_off_by_default_on_the_cpu(tiny_reranker: Path) -> None:
    pairs = [(QUESTION, passage) for passage in PASSAGES]
    full = Reranker(tiny_reranker, device="cpu")
    half = Reranker(tiny_reranker, device="cpu", bf16=True)

    scores, rounded = full.score(pairs), half.score(pairs)

    assert not full.bf16 and half.bf16
    assert rounded == pytest.approx(scores, abs=0.05) and rounded != scores  # bf16 keeps 8 bits of mantissa


def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KotaeError, match="not a reranker folder"):
        Reranker(tmp_path)
