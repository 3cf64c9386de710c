"""Training runs as short as show that training ran, for tests of what comes around it (reports, lineage,
merge, shrink, average)."""

from pathlib import Path
from typing import Any

from rich.console import Console

from kotae.adapters.config import LoraSpec, SFTRunConfig
from kotae.adapters.metadata import AdapterMetadata
from kotae.adapters.sft import train_sft

BRIEF: dict[str, Any] = dict(max_steps=2, batch_size=6, grad_accumulation=1, logging_steps=1)
console = Console(width=120)


def brief_sft(base: Path, out: Path, examples: Path, **knobs: Any) -> AdapterMetadata:
    config = SFTRunConfig(
        base=base, out=out, examples=examples, eval_fraction=0.0, probe_every=0, **{**BRIEF, **knobs}
    )
    return train_sft(config, console)


def random_rank8_adapter(base: Path, out: Path, examples: Path, seed: int) -> Path:
    """A kotae adapter of rank 8 whose updates have eight clearly different singular values: after two
    training steps B is still near zero, so random factors stand in for a long run's."""
    import torch
    from safetensors.torch import load_file, save_file

    brief_sft(base, out, examples, lora=LoraSpec(r=8, alpha=16))
    weights = out / "adapter_model.safetensors"
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: torch.randn(t.shape, generator=generator) for name, t in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    return out
