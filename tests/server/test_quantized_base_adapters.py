"""Adapters trained on a bf16 base serve on its `kotae quantize` output, and still on nothing else."""

import json
from pathlib import Path

import pytest
from server_fixtures import write_kotae_metadata

from kotae.adapters.catalog import AdapterRejected
from kotae.adapters.metadata import METADATA_FILE, AdapterMetadata
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


def adapter_trained_on(tmp_path: Path, base_hash: str) -> AdapterMetadata:
    folder = tmp_path / f"adapter-{base_hash[:4]}"
    folder.mkdir()
    write_kotae_metadata(folder, base_hash)
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
