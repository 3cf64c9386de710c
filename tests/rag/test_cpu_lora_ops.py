"""kotae's grouped LoRA ops give vLLM's CPU ops' results, adapter by adapter, and are what the CPU punica
wrapper calls once the plugin is registered."""

from importlib.metadata import entry_points

import pytest
import torch
from vllm.lora.ops import torch_ops

from kotae.rag import cpu_lora_ops

TOKENS, HIDDEN, RANK, OUT, SLOTS = 24, 16, 4, 20, 3
SEQ_LENS = torch.tensor([5, 7, 12])
SEQ_SLOTS = torch.tensor([1, 0, 1])
"""Three sequences of one prefill batch, two adapters."""


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def per_token(slots: list[int]) -> torch.Tensor:
    return torch.tensor(slots * (TOKENS // len(slots)))


def test_shrink_matches_vllm_for_each_adapter_in_the_batch():
    inputs, weights = torch.randn(TOKENS, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    indices = per_token([2, 0, 0, 1])
    expected, grouped = torch.zeros(TOKENS, RANK), torch.zeros(TOKENS, RANK)
    torch_ops.bgmv_shrink(inputs, weights, expected, indices, 0.5)
    cpu_lora_ops.bgmv_shrink(inputs, weights, grouped, indices, 0.5)
    torch.testing.assert_close(grouped, expected)


@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_and_expand_slice_match_vllm(add_inputs):
    inputs, weights = torch.randn(TOKENS, RANK), torch.randn(SLOTS, 1, OUT, RANK)
    indices = per_token([1, 2, 1])
    start = torch.randn(TOKENS, OUT + 6)
    expected, grouped = start.clone(), start.clone()
    torch_ops.bgmv_expand(inputs, weights, expected, indices, add_inputs)
    cpu_lora_ops.bgmv_expand(inputs, weights, grouped, indices, add_inputs)
    torch.testing.assert_close(grouped, expected)

    expected, grouped = start.clone(), start.clone()
    torch_ops.bgmv_expand_slice(inputs, weights, expected, indices, 3, OUT, add_inputs)
    cpu_lora_ops.bgmv_expand_slice(inputs, weights, grouped, indices, 3, OUT, add_inputs)
    torch.testing.assert_close(grouped, expected)


def test_prefill_ops_spread_sequence_slots_over_their_tokens():
    metadata = (torch.tensor([0, 5, 12]), SEQ_LENS, SEQ_SLOTS, 3, 12, TOKENS)
    inputs = torch.randn(TOKENS, HIDDEN)
    a, b = torch.randn(SLOTS, RANK, HIDDEN), torch.randn(SLOTS, OUT, RANK)
    expected, grouped = torch.zeros(TOKENS, RANK), torch.zeros(TOKENS, RANK)
    torch_ops.sgmv_shrink(inputs, a, expected, *metadata, 2.0)
    cpu_lora_ops.sgmv_shrink(inputs, a, grouped, *metadata, 2.0)
    torch.testing.assert_close(grouped, expected)

    expected_out, grouped_out = torch.zeros(TOKENS, OUT), torch.zeros(TOKENS, OUT)
    torch_ops.sgmv_expand(expected, b, expected_out, *metadata, True)
    cpu_lora_ops.sgmv_expand(grouped, b, grouped_out, *metadata, True)
    torch.testing.assert_close(grouped_out, expected_out)

    expected_out, grouped_out = torch.zeros(TOKENS, OUT + 4), torch.zeros(TOKENS, OUT + 4)
    torch_ops.sgmv_expand_slice(expected, b, expected_out, *metadata, 4, OUT, False)
    cpu_lora_ops.sgmv_expand_slice(grouped, b, grouped_out, *metadata, 4, OUT, False)
    torch.testing.assert_close(grouped_out, expected_out)


def test_tokens_without_an_adapter_get_no_lora_term():
    """Slot -1 is "no adapter" (vLLM's GPU kernels skip it); vLLM's CPU ops would index the last slot."""
    inputs = torch.randn(TOKENS, HIDDEN)
    a, b = torch.randn(SLOTS, RANK, HIDDEN), torch.randn(SLOTS, OUT, RANK)
    indices = per_token([-1, 0])
    shrunk = torch.full((TOKENS, RANK), 7.0)
    cpu_lora_ops.bgmv_shrink(inputs, a, shrunk, indices, 1.0)
    assert (shrunk[indices < 0] == 0).all() and (shrunk[indices == 0] != 0).all()

    start = torch.randn(TOKENS, OUT)
    out = start.clone()
    cpu_lora_ops.bgmv_expand(shrunk, b, out, indices, True)
    torch.testing.assert_close(out[indices < 0], start[indices < 0])
    torch.testing.assert_close(out[indices == 0], start[indices == 0] + shrunk[indices == 0] @ b[0].T)


def test_the_plugin_puts_the_grouped_ops_into_vllms_cpu_punica_wrapper(monkeypatch):
    from vllm.lora.punica_wrapper import punica_cpu

    for op in cpu_lora_ops.OPS:
        monkeypatch.setattr(punica_cpu, op.__name__, getattr(torch_ops, op.__name__))
    cpu_lora_ops.register()
    assert all(getattr(punica_cpu, op.__name__) is op for op in cpu_lora_ops.OPS)

    plugins = {entry.name: entry.value for entry in entry_points(group="vllm.general_plugins")}
    assert plugins.get("kotae_cpu_lora_ops") == "kotae.rag.cpu_lora_ops:register"
