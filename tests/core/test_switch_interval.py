"""Python's switch interval for a block (the eval's retrieval, the server's life)."""

import sys

import pytest

from kotae.core.switch_interval import switch_interval


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
