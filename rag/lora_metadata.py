"""vLLM's LoRA kernel metadata, prepared from the batch's mapping on the host rather than from its GPU copy.

On every step whose LoRA mapping changed (each prefill step, and each decode step after a request
finished), vLLM's GPU punica wrapper derives the LoRA kernels' metadata (`LoRAKernelMeta.prepare_tensors`)
from the mapping it has just copied to the GPU. Reading `torch.all(...)` into a Python bool, and
`torch.unique`, each wait there for all the GPU work queued before them. The host then idles until the
previous step has run, and only then prepares this one, while the GPU idles in turn: vLLM's asynchronous
scheduling cannot overlap the two (vLLM marks the place "TODO avoid gpu<->cpu sync").

Before that, vLLM's `convert_mapping` turns the mapping into the wrapper's base indices with a Python loop
over the step's tokens, most of the host's time in a prefill step's update.

The mapping is on the host already (`LoRAMapping`, a LoRA id per token and per sampled row). These
functions compute the same tensors from it with numpy and copy them to the GPU without waiting. Installed
in every vLLM process on a CUDA platform as a `vllm.general_plugins` entry point.
"""

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from vllm.utils.platform_utils import is_pin_memory_available

if TYPE_CHECKING:
    from vllm.lora.layers import LoRAMapping
    from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta


def adapter_slots(lora_ids: Sequence[int], lora_index_to_id: Sequence[int | None]) -> np.ndarray:
    """Each row's adapter slot in the engine's LoRA weights, -1 for a row without an adapter: what vLLM's
    `convert_mapping` computes row by row, computed a slot at a time."""
    ids = np.fromiter(lora_ids, dtype=np.int64, count=len(lora_ids))
    slots = np.full(ids.shape, -1, dtype=np.int64)
    for slot, lora_id in enumerate(lora_index_to_id):
        if lora_id is not None and lora_id > 0:
            slots[ids == lora_id] = slot
    return slots


Copies = list[tuple[torch.Tensor, np.ndarray]]
"""Host values bound for device tensors: each `(target, values)` pair fills `target` with `values`."""


def _copy_all(copies: Copies) -> None:
    """Each pair's `values` into its `target` without waiting for the device. The values of all targets of
    one type go to the device from one pinned buffer (pinning costs about as much as a small copy), which
    holds them until the copies have run; a copy from pageable memory, or one that converts, may wait
    first."""
    by_type: dict[torch.dtype, Copies] = {}
    for target, values in copies:
        by_type.setdefault(target.dtype, []).append((target, values))
    for dtype, group in by_type.items():
        source = torch.from_numpy(np.concatenate([values.ravel() for _, values in group])).to(dtype)
        if group[0][0].is_cuda and is_pin_memory_available():
            source = source.pin_memory()
        offset = 0
        for target, values in group:
            target.copy_(source[offset : offset + values.size], non_blocking=True)
            offset += values.size


def update_base_from_host(
    wrapper: Any, token_slots: np.ndarray, row_slots: np.ndarray, max_loras: int, vocab_size: int
) -> Copies:
    """What vLLM's `_update_base_metadata` (its `convert_mapping`) sets, computed from the slots of the
    step's tokens and sampled rows on the host: the copies that set it."""
    tokens, rows = token_slots.shape[0], row_slots.shape[0]
    # Each row's place among the sampler's (slot, row) logits; a row without an adapter takes the last slot.
    padded = np.where(row_slots == -1, max_loras - 1, row_slots)
    embeddings = np.maximum(token_slots, 0) * vocab_size
    embedding_indices = wrapper._embeddings_indices
    if embedding_indices.dim() == 2:  # vLLM 0.26: a first row for LoRA's extra vocabulary, now none
        embedding_indices[0, :tokens].zero_()
        embedding_indices = embedding_indices[1]
    wrapper.indices_len[:] = [tokens, rows, rows, tokens]
    return [
        (wrapper._token_lora_indices[:tokens], token_slots),
        (wrapper._sampler_indices[:rows], row_slots),
        (wrapper._sampler_indices_padded[:rows], np.arange(rows) + padded * rows),
        (embedding_indices[:tokens], embeddings),
    ]


def prepare_from_host(meta: "LoRAKernelMeta", slots: np.ndarray) -> Copies:
    """What `meta.prepare_tensors(<slots on the device>)` sets, computed from `slots` on the host: the
    copies that set its device tensors (its host flags are set here)."""
    meta._reset()
    if bool((slots == -1).all()):
        meta.no_lora_flag_cpu[0] = True  # the kernels skip their work; vLLM leaves the rest as it was
        return []
    count = slots.shape[0]
    lora_ids, tokens_per_lora = np.unique(slots, return_counts=True)
    active = lora_ids.shape[0]
    # Rounded up to a count a CUDA graph was captured for, as vLLM does.
    captured = meta.captured_lora_counts
    index = bisect.bisect_left(captured, active)
    meta.num_active_loras_cpu[0] = captured[index] if index < len(captured) else active
    return [
        (meta.token_lora_mapping[:count], slots),
        (meta.token_indices_sorted_by_lora_ids[:count], np.argsort(slots, kind="stable")),
        (meta.active_lora_ids[:active], lora_ids),
        (meta.num_tokens_per_lora[:active], tokens_per_lora),
        (meta.lora_token_start_loc[1 : 1 + active], np.cumsum(tokens_per_lora)),
    ]


def update_metadata(
    self: Any,
    mapping: "LoRAMapping",
    lora_index_to_id: list[int | None],
    max_loras: int,
    vocab_size: int,
    **kwargs: Any,
) -> None:
    """`PunicaWrapperGPU.update_metadata`, prepared on the host."""
    self.is_prefill = mapping.is_prefill
    token_slots = adapter_slots(mapping.index_mapping, lora_index_to_id)
    row_slots = adapter_slots(mapping.prompt_mapping, lora_index_to_id)
    _copy_all(
        update_base_from_host(self, token_slots, row_slots, max_loras, vocab_size)
        + prepare_from_host(self.token_mapping_meta, token_slots)
        + prepare_from_host(self.prompt_mapping_meta, row_slots)
    )


def register() -> None:
    """vLLM general plugin: on a CUDA platform, the GPU punica wrapper prepares its metadata on the host."""
    from vllm.platforms import current_platform

    if not current_platform.is_cuda_alike():
        return
    from vllm.lora.punica_wrapper.punica_gpu import PunicaWrapperGPU

    PunicaWrapperGPU.update_metadata = update_metadata  # type: ignore[method-assign]
