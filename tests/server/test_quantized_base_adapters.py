"""Adapters trained on a bf16 base serve on its `kotae quantize` output, and still on nothing else; adapters
tuned on such an output serve on it alone."""

import json
from pathlib import Path

import pytest
from server_fixtures import write_kotae_metadata

from kotae.adapters.catalog import AdapterRejected, ServedBase
from kotae.adapters.metadata import METADATA_FILE, AdapterMetadata, ModelRef, model_ref
from kotae.models.quantized import RECORD_FILE, QuantizeRecord
from kotae.models.store import model_hash
from kotae.runtime import served_base

SOURCE_HASH = "a" * 64
"""The bf16 model's hash, as `kotae quantize` records it."""
CONFIG = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": "/trained/on/tiny-gemma"}


@pytest.fixture
def quantized(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-gemma-w4a16"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "compressed-tensors"}})
    )
    (folder / "model.safetensors").write_bytes(b"\x01" * 4096)
    record = QuantizeRecord(
        model="/models/tiny-gemma", model_hash=SOURCE_HASH, method="gptq", scheme="W4A16", samples=8
    )
    (folder / RECORD_FILE).write_text(record.model_dump_json())
    return folder


def adapter_trained_on(tmp_path: Path, base_hash: str, base: ModelRef | None = None) -> AdapterMetadata:
    folder = tmp_path / f"adapter-{base_hash[:4]}"
    folder.mkdir()
    write_kotae_metadata(folder, base_hash, **({"base_model": base} if base else {}))
    return AdapterMetadata.model_validate_json((folder / METADATA_FILE).read_text())


def test_adapter_of_the_quantization_source_is_accepted(quantized: Path, tmp_path: Path) -> None:
    base = served_base(quantized.name, quantized)
    assert (base.hash, base.quantized_from) == (model_hash(quantized), SOURCE_HASH)
    assert base.check_adapter(CONFIG, adapter_trained_on(tmp_path, SOURCE_HASH), "a") == "tiny-gemma"


def test_adapter_of_the_quantized_model_itself_is_accepted(quantized: Path, tmp_path: Path) -> None:
    base = served_base(quantized.name, quantized)
    assert (
        base.check_adapter(CONFIG, adapter_trained_on(tmp_path, model_hash(quantized)), "a") == "tiny-gemma"
    )


def test_adapter_of_another_base_is_refused(quantized: Path, tmp_path: Path) -> None:
    base = served_base(quantized.name, quantized)
    with pytest.raises(AdapterRejected) as refused:
        base.check_adapter(CONFIG, adapter_trained_on(tmp_path, "f" * 64), "other")
    assert refused.value.code == "adapter_base_mismatch"


def test_unquantized_model_accepts_only_its_own_adapters(quantized: Path, tmp_path: Path) -> None:
    (quantized / RECORD_FILE).unlink()
    base = served_base(quantized.name, quantized)
    assert base.quantized_from is None
    with pytest.raises(AdapterRejected):
        base.check_adapter(CONFIG, adapter_trained_on(tmp_path, SOURCE_HASH), "a")


def test_awq_model_refuses_adapters_of_its_source_and_says_why(quantized: Path, tmp_path: Path) -> None:
    record = QuantizeRecord.model_validate_json((quantized / RECORD_FILE).read_text())
    (quantized / RECORD_FILE).write_text(record.model_copy(update={"method": "awq"}).model_dump_json())
    base = served_base(quantized.name, quantized)
    assert base.quantized_from is None
    with pytest.raises(AdapterRejected, match="by AWQ: it rescales the activations") as refused:
        base.check_adapter(CONFIG, adapter_trained_on(tmp_path, SOURCE_HASH), "a")
    assert refused.value.code == "adapter_base_mismatch"
    own = adapter_trained_on(tmp_path, model_hash(quantized))
    assert base.check_adapter(CONFIG, own, "b") == "tiny-gemma"


def test_a_quantize_output_is_recorded_with_its_source(quantized: Path) -> None:
    reference = model_ref(quantized)
    assert (reference.hash, reference.quantized_from) == (model_hash(quantized), SOURCE_HASH)
    (quantized / RECORD_FILE).unlink()
    assert model_ref(quantized).quantized_from is None


def test_adapter_tuned_on_one_quantization_is_refused_on_its_source_and_on_another(
    quantized: Path, tmp_path: Path
) -> None:
    tuned = adapter_trained_on(tmp_path, "b" * 64, base=model_ref(quantized))
    other = tmp_path / "tiny-gemma-w4a16-g32"
    other.mkdir()
    for file in quantized.iterdir():
        (other / file.name).write_bytes(file.read_bytes())
    (other / "model.safetensors").write_bytes(b"\x02" * 4096)  # the same source, rounded otherwise
    source = ServedBase(name="tiny-gemma", hash=SOURCE_HASH)
    for served in (served_base(other.name, other), source):
        with pytest.raises(AdapterRejected, match="fits those weights alone") as refused:
            served.check_adapter(CONFIG, tuned, "tuned")
        assert refused.value.code == "adapter_base_mismatch"
    assert served_base(quantized.name, quantized).check_adapter(CONFIG, tuned, "tuned") == quantized.name
