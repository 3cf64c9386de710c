"""How the in-process target cuts a run into retrieval batches, and the switch interval it retrieves at."""

import sys

import pytest

from kotae.evals.targets import retrieval_batches, switch_interval


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


def test_the_switch_interval_is_set_inside_the_block_and_restored_after_it() -> None:
    before = sys.getswitchinterval()
    with switch_interval(0.25):
        assert sys.getswitchinterval() == 0.00025
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), switch_interval(2):
        raise RuntimeError("a failed retrieval")
    assert sys.getswitchinterval() == before, "restored when retrieval fails too"
    with switch_interval(0):
        assert sys.getswitchinterval() == before, "0 leaves Python's own"
