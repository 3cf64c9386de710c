"""Training runs as short as show that training ran, for tests of what comes around it (reports, lineage,
merge, shrink)."""

from pathlib import Path
from typing import Any

from rich.console import Console

from kotae.adapters.config import SFTRunConfig
from kotae.adapters.metadata import AdapterMetadata
from kotae.adapters.sft import train_sft

BRIEF: dict[str, Any] = dict(max_steps=2, batch_size=6, grad_accumulation=1, logging_steps=1)
console = Console(width=120)


def brief_sft(base: Path, out: Path, examples: Path, **knobs: Any) -> AdapterMetadata:
    config = SFTRunConfig(
        base=base, out=out, examples=examples, eval_fraction=0.0, probe_every=0, **{**BRIEF, **knobs}
    )
    return train_sft(config, console)
