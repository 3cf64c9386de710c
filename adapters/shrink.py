"""`kotae train shrink`: a LoRA adapter of lower rank that does what a high-rank one does, nearly.

A high rank learns more per epoch (rank 256 after one epoch read as well as rank 32 after four,
docs/RESULTS.md), but its adapter is 8x as large and needs a larger `max_lora_rank` to serve. Each
module's update `scale * B @ A` is a matrix of rank r; its truncated SVD is the closest matrix of rank k
(Eckart–Young), so the shrunk adapter keeps as much of each update as a rank-k adapter can hold. The
result is a standard PEFT adapter with alpha = k (scale 1) that vLLM serves like any other.
"""

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from kotae.adapters.atomic import atomic_dir, check_target
from kotae.adapters.metadata import PEFT_FILES, AdapterRef, file_sha256, read_metadata, write_metadata
from kotae.core.errors import InputError, KotaeError

if TYPE_CHECKING:
    import torch

CONFIG_FILE, WEIGHTS_FILE = PEFT_FILES


@dataclass(frozen=True)
class ShrinkResult:
    rank: int
    energy_kept_mean: float
    """Mean over modules of the share of the update's squared Frobenius norm that the rank-k update keeps."""
    energy_kept_min: float


def shrink_adapter(
    adapter: Path, out: Path, rank: int, console: Console, overwrite: bool = False
) -> ShrinkResult:
    check_target(out, overwrite)
    metadata = read_metadata(adapter)
    config_path = adapter / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    _check_plain_lora(config_path, config)
    if not 0 < rank < metadata.lora.r:
        largest = metadata.lora.r - 1
        raise KotaeError(f"--r {rank}: {adapter} has rank {metadata.lora.r}; choose 1 to {largest}")

    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(adapter / WEIGHTS_FILE)
    scale = metadata.lora.alpha / metadata.lora.r
    shrunk: dict[str, torch.Tensor] = {}
    kept: list[float] = []
    with console.status(f"shrinking {adapter.name} from rank {metadata.lora.r} to {rank}…"):
        for name, tensor in tensors.items():
            if ".lora_B." in name:
                continue  # handled with its lora_A
            if ".lora_A." not in name:
                shrunk[name] = tensor  # fully trained modules (modules_to_save) stay as they are
                continue
            b_name = name.replace(".lora_A.", ".lora_B.")
            a, b, energy = truncate_update(tensor, tensors[b_name], scale, rank)
            shrunk[name], shrunk[b_name] = a, b
            kept.append(energy)
    result = ShrinkResult(rank, sum(kept) / len(kept), min(kept))

    source = AdapterRef(path=str(adapter.resolve()), sha256=file_sha256(adapter / WEIGHTS_FILE))
    derived = metadata.model_copy(
        update={
            "lora": metadata.lora.model_copy(update={"r": rank, "alpha": rank}),
            "shrunk_from": source,
            "eval_metrics": {
                "update_energy_kept_mean": result.energy_kept_mean,
                "update_energy_kept_min": result.energy_kept_min,
            },
            "finished_at": datetime.now(UTC),
        }
    )
    with atomic_dir(out, overwrite) as staging:
        save_file(shrunk, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        config_text = json.dumps({**config, "r": rank, "lora_alpha": rank}, indent=2)
        (staging / CONFIG_FILE).write_text(config_text + "\n", encoding="utf-8")
        write_metadata(staging, derived)
        for extra in ("report.json", "README.md", "logs"):  # the training run the update came from
            if (adapter / extra).is_file():
                shutil.copy2(adapter / extra, staging / extra)
            elif (adapter / extra).is_dir():
                shutil.copytree(adapter / extra, staging / extra)
    console.print(
        f"[green]shrunk[/] {out}: rank {metadata.lora.r} → {rank}, update energy kept "
        f"{result.energy_kept_mean:.1%} on average, {result.energy_kept_min:.1%} at least"
    )
    return result


def truncate_update(
    a: "torch.Tensor", b: "torch.Tensor", scale: float, rank: int
) -> tuple["torch.Tensor", "torch.Tensor", float]:
    """`(A', B', energy kept)` with `B' @ A'` the best rank-`rank` approximation of `scale * B @ A`.

    The SVD runs on the small r x r core of the product (QR of each factor), never on the full
    out x in matrix; the singular values are split evenly between the two factors."""
    import torch

    dtype = a.dtype
    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(scale * r_b @ r_a.T, full_matrices=False)
    root = s[:rank].sqrt()
    new_b = (q_b @ u[:, :rank]) * root
    new_a = root[:, None] * (vh[:rank] @ q_a.T)
    energy = float((s[:rank] ** 2).sum() / (s**2).sum()) if s.any() else 1.0
    return new_a.to(dtype).contiguous(), new_b.to(dtype).contiguous(), energy


def _check_plain_lora(path: Path, config: dict) -> None:
    """Only a uniform, plainly scaled LoRA shrinks to one rank and alpha."""
    for key in ("use_dora", "use_rslora"):
        if config.get(key):
            raise InputError(path, None, f"{key} adapters cannot be shrunk")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise InputError(path, None, f"{key} set: per-module ranks cannot be shrunk to one rank")
