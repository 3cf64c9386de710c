"""`kotae train shrink`: the lower-rank adapter holds each update's best rank-k approximation, loads in PEFT
as it is, and says where it came from."""

import json
import shutil
from pathlib import Path

import pytest
from brief_runs import RANK8_SCALE, console, random_rank8_adapter

from kotae.adapters.metadata import read_metadata
from kotae.adapters.shrink import shrink_adapter
from kotae.core.durable import file_sha256
from kotae.core.errors import InputError, KotaeError


@pytest.fixture(scope="module")
def rank8_adapter(brief_rank8: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_rank8_adapter(brief_rank8, tmp_path_factory.mktemp("shrink") / "r8", seed=0)


def test_shrunk_adapter_holds_the_best_low_rank_update_and_peft_applies_it(
    rank8_adapter, tiny_gemma, tmp_path
):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "r3"
    result = shrink_adapter(rank8_adapter, out, 3, console)

    source, shrunk = (
        load_file(rank8_adapter / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert source.keys() == shrunk.keys()
    name = next(n for n in source if "q_proj.lora_A" in n)
    update = RANK8_SCALE * source[name.replace("lora_A", "lora_B")].double() @ source[name].double()
    u, s, vh = torch.linalg.svd(update)
    best = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]
    assert shrunk[name].shape[0] == 3
    assert torch.allclose(
        shrunk[name.replace("lora_A", "lora_B")].double() @ shrunk[name].double(), best, atol=1e-4
    )
    assert 0 < result.energy_kept_min <= result.energy_kept_mean < 1

    # PEFT scales by alpha / r: the shrunk config must make that 1, or the update comes out rescaled.
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma, dtype=torch.float32)
    before = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    merged = PeftModel.from_pretrained(base, out).merge_and_unload()
    added = merged.model.layers[0].self_attn.q_proj.weight.detach().double() - before.double()
    layer0 = next(n for n in source if "layers.0.self_attn.q_proj.lora_A" in n)
    expected = shrunk[layer0.replace("lora_A", "lora_B")].double() @ shrunk[layer0].double()
    assert torch.allclose(added, expected, atol=1e-5)

    metadata = read_metadata(out)
    assert (metadata.lora.r, metadata.lora.alpha) == (3, 3)
    assert metadata.shrunk_from is not None
    assert metadata.shrunk_from.sha256 == file_sha256(rank8_adapter / "adapter_model.safetensors")
    assert metadata.eval_metrics == {
        "update_energy_kept_mean": result.energy_kept_mean,
        "update_energy_kept_min": result.energy_kept_min,
    }
    assert read_metadata(rank8_adapter).lora.r == 8, "the source adapter is left as it was"


def test_a_rank_not_below_the_adapters_is_refused_before_writing(rank8_adapter, tmp_path):
    with pytest.raises(KotaeError, match="has rank 8; choose 1 to 7"):
        shrink_adapter(rank8_adapter, tmp_path / "r8", 8, console)
    assert not (tmp_path / "r8").exists()


def test_a_dora_adapter_is_refused_naming_its_config(rank8_adapter, tmp_path):
    dora = shutil.copytree(rank8_adapter, tmp_path / "dora")
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(InputError, match=r"adapter_config\.json: use_dora adapters cannot be reduced"):
        shrink_adapter(dora, tmp_path / "out", 4, console)


def test_a_malformed_config_is_refused_naming_its_file_and_line(rank8_adapter, tmp_path):
    broken = shutil.copytree(rank8_adapter, tmp_path / "broken")
    (broken / "adapter_config.json").write_text('{\n  "r": 8,\n  "lora_alpha": 16,,\n}\n')
    with pytest.raises(InputError, match=r"broken/adapter_config\.json:3: not valid JSON"):
        shrink_adapter(broken, tmp_path / "out", 4, console)
    assert not (tmp_path / "out").exists()


def test_truncated_weights_are_refused_naming_the_file(rank8_adapter, tmp_path):
    broken = shutil.copytree(rank8_adapter, tmp_path / "broken")
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match=r"adapter_model\.safetensors: not a readable safetensors file"):
        shrink_adapter(broken, tmp_path / "out", 4, console)
    assert not (tmp_path / "out").exists()
