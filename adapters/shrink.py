"""`kotae train shrink`: a LoRA adapter of lower rank that does what a high-rank one does, nearly.

A high rank learns more per epoch (docs/RESULTS.md), but its adapter grows with the rank and needs a larger
`max_lora_rank` to serve. The shrunk
adapter holds each module's update cut to its best rank-k approximation (`kotae.adapters.low_rank`).
"""

from pathlib import Path

from rich.console import Console

from kotae.adapters.atomic import check_target
from kotae.adapters.low_rank import LowRankResult, Source, write_low_rank
from kotae.core.errors import KotaeError


def shrink_adapter(
    adapter: Path, out: Path, rank: int, console: Console, overwrite: bool = False
) -> LowRankResult:
    check_target(out, overwrite)
    source = Source.read(adapter)
    if not 0 < rank < source.metadata.lora.r:
        largest = source.metadata.lora.r - 1
        raise KotaeError(f"--r {rank}: {adapter} has rank {source.metadata.lora.r}; choose 1 to {largest}")
    with console.status(f"shrinking {adapter.name} from rank {source.metadata.lora.r} to {rank}…"):
        result = write_low_rank([source], out, rank, {"shrunk_from": source.ref()}, overwrite)
    console.print(
        f"[green]shrunk[/] {out}: rank {source.metadata.lora.r} → {rank}, update energy kept "
        f"{result.energy_kept_mean:.1%} on average, {result.energy_kept_min:.1%} at least"
    )
    return result
