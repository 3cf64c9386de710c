"""`kotae train average`: the averaged adapter holds the weighted mean of the updates (exactly when its rank
allows, else that mean's best low-rank approximation), says where it came from, and refuses adapters whose
updates do not add up."""

import json
import shutil
from pathlib import Path

import pytest
from brief_runs import RANK8_SCALE, console, random_rank8_adapter

from kotae.adapters.average import average_adapters
from kotae.adapters.metadata import read_metadata
from kotae.core.durable import file_sha256
from kotae.core.errors import InputError, KotaeError


@pytest.fixture(scope="module")
def two_adapters(brief_rank8: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("average")
    return [random_rank8_adapter(brief_rank8, folder / f"r8-{seed}", seed) for seed in (1, 2)]


def updates(adapter: Path, scale: float) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(adapter / "adapter_model.safetensors")
    return {
        name: scale * tensors[name.replace("lora_A", "lora_B")].double() @ tensor.double()
        for name, tensor in tensors.items()
        if "lora_A" in name
    }


def test_at_the_summed_rank_the_average_is_the_weighted_mean_update(two_adapters, tmp_path):
    import torch

    out = tmp_path / "mean"
    result = average_adapters(two_adapters, out, console, weights=[3, 1], rank=16)

    first, second = (updates(adapter, RANK8_SCALE) for adapter in two_adapters)
    averaged = updates(out, 1.0)
    assert averaged.keys() == first.keys()
    for name, update in averaged.items():
        assert torch.allclose(update, 0.75 * first[name] + 0.25 * second[name], atol=1e-4)
    assert result.energy_kept_min == pytest.approx(1.0)

    metadata = read_metadata(out)
    assert (metadata.lora.r, metadata.lora.alpha) == (16, 16)
    assert [(ref.sha256, ref.weight) for ref in metadata.averaged_from] == [
        (file_sha256(two_adapters[0] / "adapter_model.safetensors"), 0.75),
        (file_sha256(two_adapters[1] / "adapter_model.safetensors"), 0.25),
    ]


def test_below_the_summed_rank_the_average_is_the_best_approximation_of_the_mean(two_adapters, tmp_path):
    import torch

    out = tmp_path / "r8"
    result = average_adapters(two_adapters, out, console)  # rank: the sources' own, 8

    first, second = (updates(adapter, RANK8_SCALE) for adapter in two_adapters)
    name = next(iter(first))
    u, s, vh = torch.linalg.svd(0.5 * first[name] + 0.5 * second[name])
    assert torch.allclose(updates(out, 1.0)[name], u[:, :8] @ torch.diag(s[:8]) @ vh[:8], atol=1e-4)
    assert 0 < result.energy_kept_min <= result.energy_kept_mean < 1
    assert read_metadata(out).lora.r == 8


def test_an_adapter_of_another_base_is_refused_naming_its_metadata(two_adapters, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(two_adapters[1], other)
    metadata = json.loads((other / "kotae_adapter.json").read_text())
    metadata["base_model"]["hash"] = "0" * 64
    (other / "kotae_adapter.json").write_text(json.dumps(metadata))
    with pytest.raises(InputError, match=r"other/kotae_adapter\.json: base model 0{64} differs"):
        average_adapters([two_adapters[0], other], tmp_path / "out", console)
    assert not (tmp_path / "out").exists()


def test_weights_must_match_the_adapters(two_adapters, tmp_path):
    with pytest.raises(KotaeError, match=r"one positive --weight per --adapter \(2\)"):
        average_adapters(two_adapters, tmp_path / "out", console, weights=[1.0])
    with pytest.raises(KotaeError, match="rank at most 16"):
        average_adapters(two_adapters, tmp_path / "out", console, rank=17)
