"""`benchmarks/lora_metadata.py` times vLLM's and kotae's LoRA metadata updates on an eval's step shapes;
on a CPU, without device work to wait behind."""

import json

from benchmark_scripts import run_script
from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta
from vllm.lora.punica_wrapper import punica_gpu


def test_it_reports_both_updates_for_prefill_and_decode_steps(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(punica_gpu, "LoRAKernelMeta", LoRAKernelMeta, raising=False)  # the script binds it
    out = tmp_path / "lora-metadata.json"
    run_script("lora_metadata", ["--out", str(out), "--repeat", "1"], monkeypatch)
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["device"] == "cpu" and report["busy_ms"] == 0
    runs = [f"{step}_{label}" for step in ("prefill", "decode") for label in ("vllm", "kotae")]
    timed = {f"{run}_ms" for run in runs} | {f"{run}_busy_ms" for run in runs}
    assert set(report) == {"device", "busy_ms", *timed}
    assert all(report[f"{run}_ms"] > 0 and report[f"{run}_busy_ms"] == 0 for run in runs)
