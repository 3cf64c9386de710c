"""Training runs as short as show that training ran, for tests of what comes around it (reports, lineage,
merge, shrink, average)."""

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from kotae.adapters.config import LoraSpec, SFTRunConfig
from kotae.adapters.metadata import AdapterMetadata
from kotae.adapters.sft import train_sft

BRIEF: dict[str, Any] = dict(max_steps=2, batch_size=6, grad_accumulation=1, logging_steps=1)
console = Console(width=120)
RANK8 = LoraSpec(r=8, alpha=32)
"""The shape of the session's brief rank-8 run (`brief_rank8`): neither r nor alpha is the default."""
RANK8_SCALE = RANK8.alpha / RANK8.r
"""What PEFT multiplies B @ A by in that run's adapters."""


def brief_sft(base: Path, out: Path, examples: Path, **knobs: Any) -> AdapterMetadata:
    config = SFTRunConfig(
        base=base, out=out, examples=(examples,), eval_fraction=0.0, probe_every=0, **{**BRIEF, **knobs}
    )
    return train_sft(config, console)


def random_rank8_adapter(trained: Path, out: Path, seed: int) -> Path:
    """A copy of `trained`, a brief rank-8 run, whose updates have eight clearly different singular values:
    after two training steps B is still near zero, so random factors stand in for a long run's."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(trained, out)
    weights = out / "adapter_model.safetensors"
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: torch.randn(t.shape, generator=generator) for name, t in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    return out
