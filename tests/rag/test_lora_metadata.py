"""kotae's host-side LoRA kernel metadata is vLLM's, tensor for tensor, and is prepared without reading
anything back from the device: vLLM's GPU punica wrapper is built here on the CPU (the same tensors) and on
PyTorch's `meta` device, whose tensors hold no data, so any read of the device's values fails."""

from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from vllm.config.lora import LoRAConfig
from vllm.lora.layers import LoRAMapping
from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta
from vllm.lora.punica_wrapper import punica_gpu
from vllm.platforms import current_platform

from kotae.rag import lora_metadata

MAX_LORAS, TOKENS, VOCAB = 4, 512, 1000
SLOT_IDS = [7, None, 3, 9]
"""The engine's adapter slots: the LoRA id each holds (slot 1 empty)."""

vllm_update_metadata = punica_gpu.PunicaWrapperGPU.update_metadata

META_FIELDS = [
    "token_lora_mapping",
    "token_indices_sorted_by_lora_ids",
    "active_lora_ids",
    "num_tokens_per_lora",
    "lora_token_start_loc",
    "no_lora_flag_cpu",
    "num_active_loras_cpu",
]

BASE_INDICES = ["token_lora_indices", "sampler_indices", "sampler_indices_padded"]
"""What `convert_mapping` gives the wrapper, each cut to this step's length."""


@pytest.fixture
def wrapper(monkeypatch: pytest.MonkeyPatch):
    """vLLM's GPU punica wrapper on any device (its module binds the metadata class only where Triton
    runs), as it was before any plugin."""
    monkeypatch.setattr(punica_gpu, "LoRAKernelMeta", LoRAKernelMeta, raising=False)
    monkeypatch.setattr(punica_gpu.PunicaWrapperGPU, "update_metadata", vllm_update_metadata)

    def build(device: str, specialize_active_lora: bool = False) -> punica_gpu.PunicaWrapperGPU:
        config = LoRAConfig(
            max_loras=MAX_LORAS, max_lora_rank=8, specialize_active_lora=specialize_active_lora
        )
        built = punica_gpu.PunicaWrapperGPU(TOKENS, 64, device=device, lora_config=config)
        for meta in (built.token_mapping_meta, built.prompt_mapping_meta):
            for name in META_FIELDS[:2]:
                getattr(meta, name).fill_(-7)  # torch.empty's leftovers would differ between two wrappers
        return built

    return build


def mapping(seed: int, lora_ids: list[int], rows: int) -> LoRAMapping:
    """A batch of `rows` sequences of random lengths, each with one of `lora_ids` (0: no adapter), built as
    vLLM's input batch builds it: tuples of numpy integers."""
    generator = np.random.default_rng(seed)
    sequence_ids = generator.choice(np.array(lora_ids, dtype=np.int32), size=rows)
    lengths = generator.integers(1, TOKENS // rows + 1, size=rows)
    return LoRAMapping(tuple(sequence_ids.repeat(lengths)), tuple(sequence_ids), is_prefill=True)


BATCHES = {
    "one adapter": (0, [7], 40),
    "adapters and base rows": (1, [7, 0, 3, 9], 30),
    "base rows only": (2, [0], 12),
    "one long sequence": (3, [3], 1),
    "decode-sized": (4, [9, 0], 64),
}


@pytest.mark.parametrize("specialize_active_lora", [False, True])
@pytest.mark.parametrize("batch", BATCHES.values(), ids=BATCHES.keys())
def test_the_metadata_is_vllms(wrapper, batch, specialize_active_lora):
    ours, theirs = wrapper("cpu", specialize_active_lora), wrapper("cpu", specialize_active_lora)
    for seed in range(3):  # a batch after a batch: what the first left behind must not leak
        batch_mapping = mapping(batch[0] * 10 + seed, *batch[1:])
        lora_metadata.update_metadata(ours, batch_mapping, SLOT_IDS, MAX_LORAS, VOCAB)
        theirs.update_metadata(batch_mapping, SLOT_IDS, MAX_LORAS, VOCAB)
        for meta in ("token_mapping_meta", "prompt_mapping_meta"):
            for name in META_FIELDS:
                got, expected = getattr(getattr(ours, meta), name), getattr(getattr(theirs, meta), name)
                assert torch.equal(got, expected), f"{meta}.{name} after batch {seed}"
        assert ours.indices_len == theirs.indices_len, f"after batch {seed}"
        for name in BASE_INDICES:
            got, expected = getattr(ours, name), getattr(theirs, name)
            assert torch.equal(got, expected), f"{name} after batch {seed}"
        embeddings = ours.indices_len[3]
        assert torch.equal(
            ours._embeddings_indices[..., :embeddings], theirs._embeddings_indices[..., :embeddings]
        ), f"embedding indices after batch {seed}"
        assert ours.is_prefill == theirs.is_prefill


def test_nothing_is_read_back_from_the_device(wrapper):
    on_meta = wrapper("meta")
    batch_mapping = mapping(5, [7, 0, 3], 20)
    with pytest.raises((RuntimeError, NotImplementedError)):
        on_meta.update_metadata(batch_mapping, SLOT_IDS, MAX_LORAS, VOCAB)  # vLLM's reads the mapping back
    lora_metadata.update_metadata(on_meta, batch_mapping, SLOT_IDS, MAX_LORAS, VOCAB)
    assert on_meta.token_mapping_meta.no_lora_flag_cpu.tolist() == [False]
    assert on_meta.token_mapping_meta.num_active_loras_cpu.tolist() == [MAX_LORAS + 1]


def test_the_plugin_replaces_the_gpu_wrappers_metadata_on_cuda_only(wrapper, monkeypatch):
    monkeypatch.setattr(current_platform, "is_cuda_alike", lambda: False)
    lora_metadata.register()
    assert punica_gpu.PunicaWrapperGPU.update_metadata is vllm_update_metadata

    monkeypatch.setattr(current_platform, "is_cuda_alike", lambda: True)
    lora_metadata.register()
    assert punica_gpu.PunicaWrapperGPU.update_metadata is lora_metadata.update_metadata

    plugins = {entry.name: entry.value for entry in entry_points(group="vllm.general_plugins")}
    assert plugins.get("kotae_lora_metadata") == "kotae.rag.lora_metadata:register"


class CopySources(TorchDispatchMode):
    """The host storages that device copies are made from, by target type."""

    def __init__(self) -> None:
        super().__init__()
        self.storages: dict[torch.dtype, set[int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.copy_.default and args[1].dim() > 0:  # not a host flag set from a number
            target, source = args[:2]
            self.storages.setdefault(target.dtype, set()).add(source.untyped_storage().data_ptr())
        return func(*args, **(kwargs or {}))


def test_each_type_of_metadata_is_copied_from_one_host_buffer(wrapper):
    """Pinning a buffer costs about as much as a small copy: an update pins one per type, not one per
    tensor."""
    ours = wrapper("cpu")
    with CopySources() as sources:
        lora_metadata.update_metadata(ours, mapping(6, [7, 0, 3], 20), SLOT_IDS, MAX_LORAS, VOCAB)
    assert {dtype: len(storages) for dtype, storages in sources.storages.items()} == {
        torch.int64: 1,
        torch.int32: 1,
    }
