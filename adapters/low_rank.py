"""An adapter holding the best rank-k approximation of a weighted sum of LoRA updates: what `kotae train
shrink` (one adapter, a lower rank) and `kotae train average` (several adapters, one rank) write.

Each module's update `scale * B @ A` is a matrix of rank r. A weighted sum of such updates is again a
product of two factors (the B's side by side, the A's stacked), and the truncated SVD of a product is the
closest matrix of rank k (Eckart–Young), so one truncation serves both commands. The result is a standard
PEFT adapter with alpha = k (scale 1) that vLLM serves like any other.
"""

import json
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kotae.adapters.atomic import atomic_dir
from kotae.adapters.metadata import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AdapterMetadata,
    AdapterRef,
    read_metadata,
    read_peft_config,
    write_metadata,
)
from kotae.core.durable import file_sha256
from kotae.core.errors import InputError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LowRankResult:
    rank: int
    energy_kept_mean: float
    """Mean over modules of the share of the update's squared Frobenius norm that the rank-k update keeps."""
    energy_kept_min: float


@dataclass(frozen=True)
class Source:
    """An adapter read for combining, with its weight in the sum."""

    path: Path
    weight: float
    metadata: AdapterMetadata
    config: dict[str, Any]

    @classmethod
    def read(cls, path: Path, weight: float = 1.0) -> "Source":
        metadata = read_metadata(path)
        config = read_peft_config(path)
        _check_plain_lora(path / CONFIG_FILE, config)
        return cls(path, weight, metadata, config)

    @property
    def scale(self) -> float:
        return self.metadata.lora.alpha / self.metadata.lora.r

    def ref(self) -> AdapterRef:
        return AdapterRef(path=str(self.path.resolve()), sha256=file_sha256(self.path / WEIGHTS_FILE))


def write_low_rank(
    sources: list[Source], out: Path, rank: int, lineage: dict[str, Any], overwrite: bool
) -> LowRankResult:
    """Write to `out` the rank-`rank` adapter closest to `sum(weight * update)` over `sources`, its
    metadata the first source's with the new shape, `lineage` (e.g. `shrunk_from`) and the energy kept."""
    import torch
    from safetensors.torch import save_file

    loaded = [_load_weights(source.path / WEIGHTS_FILE) for source in sources]
    for source, tensors in zip(sources[1:], loaded[1:], strict=True):
        if tensors.keys() != loaded[0].keys():
            raise InputError(
                source.path / WEIGHTS_FILE, None, f"its modules differ from those of {sources[0].path}"
            )
    pairs = list(zip(sources, loaded, strict=True))
    combined: dict[str, torch.Tensor] = {}
    kept: list[float] = []
    for name, tensor in loaded[0].items():
        if ".lora_B." in name:
            continue  # handled with its lora_A
        if ".lora_A." not in name:  # fully trained modules (modules_to_save): their weighted mean
            combined[name] = sum(s.weight * t[name].double() for s, t in pairs).to(tensor.dtype)
            continue
        b_name = name.replace(".lora_A.", ".lora_B.")
        a = torch.cat([t[name].double() for _, t in pairs])
        b = torch.cat([s.weight * s.scale * t[b_name].double() for s, t in pairs], dim=1)
        new_a, new_b, energy = truncate_product(a, b, rank)
        combined[name], combined[b_name] = new_a.to(tensor.dtype), new_b.to(tensor.dtype)
        kept.append(energy)
    result = LowRankResult(rank, sum(kept) / len(kept), min(kept))

    first = sources[0]
    derived = first.metadata.model_copy(
        update={
            "lora": replace(first.metadata.lora, r=rank, alpha=rank),
            **lineage,
            "eval_metrics": {
                "update_energy_kept_mean": result.energy_kept_mean,
                "update_energy_kept_min": result.energy_kept_min,
            },
            "finished_at": datetime.now(UTC),
        }
    )
    with atomic_dir(out, overwrite) as staging:
        save_file(combined, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        config_text = json.dumps({**first.config, "r": rank, "lora_alpha": rank}, indent=2)
        (staging / CONFIG_FILE).write_text(config_text + "\n", encoding="utf-8")
        write_metadata(staging, derived)
        if len(sources) == 1:
            _copy_run_records(first.path, staging)
    return result


def truncate_product(
    a: "torch.Tensor", b: "torch.Tensor", rank: int
) -> tuple["torch.Tensor", "torch.Tensor", float]:
    """`(A', B', energy kept)` with `B' @ A'` the best rank-`rank` approximation of `B @ A`.

    The SVD runs on the small r x r core of the product (QR of each factor), never on the full
    out x in matrix; the singular values are split evenly between the two factors."""
    import torch

    dtype = a.dtype
    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    root = s[:rank].sqrt()
    new_b = (q_b @ u[:, :rank]) * root
    new_a = root[:, None] * (vh[:rank] @ q_a.T)
    energy = float((s[:rank] ** 2).sum() / (s**2).sum()) if s.any() else 1.0
    return new_a.to(dtype).contiguous(), new_b.to(dtype).contiguous(), energy


def _load_weights(path: Path) -> dict[str, "torch.Tensor"]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except SafetensorError as error:
        raise InputError(path, None, f"not a readable safetensors file ({error})") from None


def _copy_run_records(adapter: Path, staging: Path) -> None:
    """The training run one adapter's update came from still describes a copy of that update."""
    for extra in ("report.json", "README.md", "logs"):
        if (adapter / extra).is_file():
            shutil.copy2(adapter / extra, staging / extra)
        elif (adapter / extra).is_dir():
            shutil.copytree(adapter / extra, staging / extra)


def _check_plain_lora(path: Path, config: dict[str, Any]) -> None:
    """Only uniform, plainly scaled LoRA updates are products `scale * B @ A` of one rank and alpha."""
    for key in ("use_dora", "use_rslora"):
        if config.get(key):
            raise InputError(path, None, f"{key} adapters cannot be reduced to a plain low-rank update")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise InputError(path, None, f"{key} set: per-module ranks cannot be reduced to one rank")
