"""`kotae train average`: one adapter whose update is the weighted mean of several adapters' updates.

Averaging the weights of runs that share a start ("model soups", checkpoint averaging) often does better
than any one of them; the shipped default adapter is such an average (docs/RESULTS.md). The mean of k
rank-r updates has rank up to k*r; it is cut to the rank asked for (`kotae.adapters.low_rank`), by default
the largest of the sources' ranks.
"""

from pathlib import Path

from rich.console import Console

from kotae.adapters.atomic import check_target
from kotae.adapters.low_rank import LowRankResult, Source, write_low_rank
from kotae.adapters.metadata import METADATA_FILE, WeightedAdapterRef
from kotae.core.errors import InputError, KotaeError


def average_adapters(
    adapters: list[Path],
    out: Path,
    console: Console,
    weights: list[float] | None = None,
    rank: int | None = None,
    overwrite: bool = False,
) -> LowRankResult:
    check_target(out, overwrite)
    if len(adapters) < 2:
        raise KotaeError("give at least two --adapter folders to average")
    weights = weights or [1.0] * len(adapters)
    if len(weights) != len(adapters) or min(weights) <= 0:
        count = len(adapters)
        raise KotaeError(f"give one positive --weight per --adapter ({count}), or none for equal weights")
    total = sum(weights)
    sources = [Source.read(path, weight / total) for path, weight in zip(adapters, weights, strict=True)]
    _check_compatible(sources)
    ranks = [source.metadata.lora.r for source in sources]
    rank = rank or max(ranks)
    if not 0 < rank <= sum(ranks):
        raise KotaeError(f"--r {rank}: the average of ranks {ranks} has rank at most {sum(ranks)}")
    lineage = {
        "averaged_from": [
            WeightedAdapterRef(**source.ref().model_dump(), weight=source.weight) for source in sources
        ]
    }
    with console.status(f"averaging {len(sources)} adapters at rank {rank}…"):
        result = write_low_rank(sources, out, rank, lineage, overwrite)
    console.print(
        f"[green]averaged[/] {out}: {len(sources)} adapters at rank {rank}, update energy kept "
        f"{result.energy_kept_mean:.1%} on average, {result.energy_kept_min:.1%} at least"
    )
    return result


def _check_compatible(sources: list[Source]) -> None:
    """Updates add up only on the same base, modules, prompt template and prompt format."""

    def traits(source: Source) -> dict[str, object]:
        metadata = source.metadata
        return {
            "base model": metadata.base_model.hash,
            "prompt template": metadata.prompt_version,
            "prompt format": metadata.prompt_format,
            "target modules": sorted(metadata.lora.target_modules),
            "fully trained modules": sorted(metadata.lora.modules_to_save),
        }

    first = traits(sources[0])
    for source in sources[1:]:
        for what, value in traits(source).items():
            if value != first[what]:
                reason = f"{what} {value} differs from {sources[0].path}'s {first[what]}"
                raise InputError(source.path / METADATA_FILE, None, reason)
