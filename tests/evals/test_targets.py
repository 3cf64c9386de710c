"""How the in-process target cuts a run into retrieval batches."""

import pytest

from kotae.evals.targets import retrieval_batches


def batches(count: int, size: int) -> list[int]:
    cut = retrieval_batches(count, size)
    assert [s.start for s in cut] == [0, *(s.stop for s in cut[:-1])], "contiguous, in order"
    assert range(count)[cut[-1]][-1:] == range(count)[-1:], "the last question is in the last batch"
    return [len(range(count)[s]) for s in cut]


def test_the_first_batches_ramp_up_so_that_generation_starts_sooner() -> None:
    assert batches(980, 128) == [32, 64] + [128] * 6 + [116]
    assert batches(20, 128) == [20]
    assert batches(8, 3) == [1, 2, 3, 2]


@pytest.mark.parametrize("count", [1, 980])
def test_no_overlap_is_one_batch(count: int) -> None:
    assert batches(count, 0) == [count]
