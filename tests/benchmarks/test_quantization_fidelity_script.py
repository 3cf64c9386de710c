"""`benchmarks/quantization_fidelity.py` compares each model's answer-token distributions with the 16-bit
base's under one adapter: the base against itself agrees exactly, a perturbed copy does not."""

import json
from pathlib import Path

import pytest
from benchmark_scripts import run_script
from jsonl_files import write_jsonl

from kotae.models.testing import build_random_lora, build_tiny_gemma

EXAMPLES = [
    {
        "prompt": f"### 指示:\n{question}\n\n### 応答:\n",
        "completion": f"{answer}\n\n",
        "question": question,
        "answers": [answer],
    }
    for question, answer in (("富士山の標高は？", "3776メートル"), ("日本最大の湖は？", "琵琶湖"))
]


def perturbed_copy(base: Path, out: Path) -> Path:
    """The base with noise on every weight, standing in for its 4-bit rounding."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(base, out)
    generator = torch.Generator().manual_seed(0)
    tensors = load_file(out / "model.safetensors")
    noisy = {
        name: t + 0.05 * torch.randn(t.shape, generator=generator).to(t.dtype) for name, t in tensors.items()
    }
    save_file(noisy, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_the_base_agrees_with_itself_and_a_perturbed_copy_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = build_tiny_gemma(tmp_path / "base")
    noisy = perturbed_copy(base, tmp_path / "noisy")
    adapter = build_random_lora(base, tmp_path / "lora", seed=1)
    examples = write_jsonl(tmp_path / "examples.jsonl", EXAMPLES)
    out = tmp_path / "fidelity.json"

    args = ["--base", str(base), "--quantized", str(base), str(noisy), "--adapter", str(adapter)]
    run_script("quantization_fidelity", [*args, "--examples", str(examples), "--out", str(out)], monkeypatch)

    itself, same, perturbed = json.loads(out.read_text())["results"]
    assert (itself["model"], same["model"], perturbed["model"]) == ("16-bit (itself)", "base", "noisy")
    assert itself["examples"] == 2 and itself["tokens"] >= 2
    assert (same["kl"], same["argmax_agree"]) == (0.0, 1.0)
    assert same["gold_nll"] == itself["gold_nll"] > 0
    assert perturbed["kl"] > 0 and perturbed["gold_nll"] != itself["gold_nll"]
    assert "| noisy |" in capsys.readouterr().out
