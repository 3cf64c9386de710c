"""The weight format eval runs record, read from the model folder (any engine kind can answer it)."""

import json
from pathlib import Path

from kotae.models.weights import weights_format


def model_folder(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_plain_folder_reports_its_dtype(tmp_path: Path) -> None:
    assert weights_format(model_folder(tmp_path, {"dtype": "bfloat16"})) == "bf16"


def test_older_transformers_torch_dtype_is_read(tmp_path: Path) -> None:
    assert weights_format(model_folder(tmp_path, {"torch_dtype": "float32"})) == "fp32"


def test_quantized_folder_reports_its_method(tmp_path: Path) -> None:
    config = {"dtype": "bfloat16", "quantization_config": {"quant_method": "compressed-tensors"}}
    assert weights_format(model_folder(tmp_path, config)) == "compressed-tensors"


def test_quantization_asked_of_vllm_wins(tmp_path: Path) -> None:
    assert weights_format(model_folder(tmp_path, {"dtype": "bfloat16"}), "fp8") == "fp8"


def test_folder_without_dtype_is_unknown(tmp_path: Path) -> None:
    assert weights_format(model_folder(tmp_path, {"model_type": "gemma3_text"})) is None
