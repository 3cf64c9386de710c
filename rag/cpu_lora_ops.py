"""LoRA products for vLLM's CPU punica wrapper, one matrix product per adapter in the batch.

vLLM's PyTorch-native ops (`vllm.lora.ops.torch_ops`, the CPU path) gather each token's adapter weights
before an einsum: a prefill chunk of 2,048 tokens through an MLP projection of a rank-32 adapter copies
2,048 × 2,048 × 32 weights per layer, ten times the work of the product itself. Tokens of one adapter share
its weights, so one product per adapter gives the same result. Rows whose slot is negative
(no adapter) get no LoRA term, as vLLM's GPU kernels treat them.

Installed in every vLLM process (the engine core runs in its own) as a `vllm.general_plugins` entry
point; shapes these ops do not expect go to vLLM's own.
"""

from collections.abc import Callable

import torch
from vllm.lora.ops import torch_ops


def _slots(indices: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
    """Each adapter slot the batch uses, with its rows (None: every row)."""
    slots = indices.unique().tolist()
    if len(slots) == 1:
        return [] if slots[0] < 0 else [(slots[0], None)]
    return [(slot, (indices == slot).nonzero().squeeze(1)) for slot in slots if slot >= 0]


def _product(
    inputs: torch.Tensor, weights: torch.Tensor, slot: int, rows: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """`inputs[rows] @ weights[slot].T` in `dtype`; stacked weights are [slots, (1,) out, in]."""
    weight = weights[slot]
    if weight.dim() == 3:
        weight = weight.squeeze(0)
    selected = inputs if rows is None else inputs[rows]
    return selected.to(dtype) @ weight.to(dtype).T


def _one_row_per_token(inputs: torch.Tensor, output: torch.Tensor, indices: torch.Tensor) -> bool:
    return inputs.shape[0] == output.shape[0] == indices.shape[0]


def _add_or_set(
    output: torch.Tensor, rows: torch.Tensor | None, columns: slice, values: torch.Tensor, add_inputs: bool
) -> None:
    target = output[:, columns] if rows is None else output[rows, columns]
    values = values + target if add_inputs else values
    if rows is None:
        output[:, columns] = values
    else:
        output[rows, columns] = values


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    if not _one_row_per_token(inputs, output_tensor, lora_indices_tensor):
        return torch_ops.bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling)
    rank = lora_a_weights.shape[-2]
    output_tensor[lora_indices_tensor < 0, :rank] = 0
    for slot, rows in _slots(lora_indices_tensor):
        product = scaling * _product(inputs, lora_a_weights, slot, rows, output_tensor.dtype)
        _add_or_set(output_tensor, rows, slice(0, rank), product, add_inputs=False)


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    if not _one_row_per_token(inputs, output_tensor, lora_indices_tensor):
        return torch_ops.bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs)
    # The adapter and the model may pad the output dimension differently.
    width = min(lora_b_weights.shape[-2], output_tensor.shape[1])
    for slot, rows in _slots(lora_indices_tensor):
        product = _product(inputs, lora_b_weights, slot, rows, output_tensor.dtype)[:, :width]
        _add_or_set(output_tensor, rows, slice(0, width), product, add_inputs)


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    if not _one_row_per_token(inputs, output_tensor, lora_indices_tensor):
        return torch_ops.bgmv_expand_slice(
            inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset, slice_size, add_inputs
        )
    columns = slice(slice_offset, slice_offset + slice_size)
    for slot, rows in _slots(lora_indices_tensor):
        product = _product(inputs, lora_b_weights, slot, rows, output_tensor.dtype)
        _add_or_set(output_tensor, rows, columns, product, add_inputs)


def _per_token(lora_indices_tensor: torch.Tensor, seq_len_tensor: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def _per_sequence(op: Callable[..., None]) -> Callable[..., None]:
    """The sgmv form of a bgmv op: vLLM gives it one adapter slot per sequence, which becomes one per
    token; the arguments after the per-sequence ones pass through."""

    def per_sequence(
        inputs: torch.Tensor,
        weights: torch.Tensor,
        output_tensor: torch.Tensor,
        b_seq_start_loc: torch.Tensor,
        seq_len_tensor: torch.Tensor,
        lora_indices_tensor: torch.Tensor,
        batches: int,
        max_seq_length: int,
        token_nums: int,
        *rest: object,
        **options: object,
    ) -> None:
        indices = _per_token(lora_indices_tensor, seq_len_tensor)
        op(inputs, weights, output_tensor, indices, *rest, **options)

    per_sequence.__name__ = "sgmv_" + op.__name__.removeprefix("bgmv_")
    return per_sequence


sgmv_shrink = _per_sequence(bgmv_shrink)
sgmv_expand = _per_sequence(bgmv_expand)
sgmv_expand_slice = _per_sequence(bgmv_expand_slice)


OPS = (bgmv_shrink, bgmv_expand, bgmv_expand_slice, sgmv_shrink, sgmv_expand, sgmv_expand_slice)


def register() -> None:
    """vLLM general plugin: on the CPU platform, the punica wrapper calls these ops instead of vLLM's."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.lora.punica_wrapper import punica_cpu

    for op in OPS:
        setattr(punica_cpu, op.__name__, op)
