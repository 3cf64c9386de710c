"""vLLM's LoRA expand kernel on kotae's adapter shapes (Gemma 3 270M's linear layers, rank 64) in an eval's
prefill step (65,536 tokens) and a server's (8,192): GPU milliseconds of one step's expands over every layer,
under vLLM's default tiles and under each candidate of a small grid, and how far each candidate's output is
from the default's.

vLLM's default tiles for these steps are 64×64 (64×128 for one slice), over 32 of the rank's 64 at a time;
the candidates take the whole rank at once, in tiles from 32×64 to 128×256.

    python benchmarks/lora_expand.py --out /tmp/r/lora-expand.json
"""

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
from vllm.lora.ops.triton_ops import lora_expand_op
from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta
from vllm.lora.ops.triton_ops.utils import get_lora_op_configs

from kotae.rag.gpu_memory import ModelShape

GEMMA_3_270M = {
    "num_hidden_layers": 18,
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "torch_dtype": "bfloat16",
}
"""The shapes of kotae's generator (`config.json` of the model `kotae models pull` writes)."""


def generator_shape(model: Path | None) -> ModelShape:
    """The shapes of the model folder `model`, or of kotae's generator."""
    return ModelShape.of(json.loads((model / "config.json").read_text()) if model else GEMMA_3_270M)


MAX_LORAS = 4
"""kotae's `max_loras`: vLLM's expand launches a program row per adapter slot and the no-adapter one."""

CANDIDATES = [
    {
        "block_m": m,
        "block_n": n,
        "block_k": 64,
        "num_warps": w,
        "num_ctas": 1,
        "num_stages": 2,
        "max_nreg": None,
    }
    for m, n, w in itertools.product((32, 64, 128), (64, 128, 256), (4, 8))
]
"""Tiles over the whole rank (64: one pass of the reduction, so the pipeline's stages do not matter)."""


def merged_layers(shape: ModelShape) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Each LoRA-wrapped linear layer of a block as vLLM merges it: its input width and its output slices,
    widest first."""
    kv_width = shape.kv_heads * shape.head_dim
    return {
        "gate_up_proj": (shape.hidden, (shape.intermediate, shape.intermediate)),
        "qkv_proj": (shape.hidden, (shape.query_width, kv_width, kv_width)),
        "o_proj": (shape.query_width, (shape.hidden,)),
        "down_proj": (shape.intermediate, (shape.hidden,)),
    }


def layer_slices(shape: ModelShape) -> dict[tuple[int, ...], list[str]]:
    """The output slices of the merged layers, widest first, and the layers of each block that expand to
    them (o_proj and down_proj both to the model's width)."""
    grouped: dict[tuple[int, ...], list[str]] = {}
    for name, (_, slices) in merged_layers(shape).items():
        grouped.setdefault(slices, []).append(name)
    return grouped


class ExpandCase:
    """One layer's expand in a step of `tokens`, every token on the first adapter slot, as vLLM calls it."""

    def __init__(self, slices: tuple[int, ...], tokens: int, rank: int, device: torch.device) -> None:
        self.meta = LoRAKernelMeta.make(MAX_LORAS, tokens, device)
        self.meta.prepare_tensors(torch.zeros(tokens, dtype=torch.int32, device=device))
        generator = torch.Generator(device=device).manual_seed(0)
        self.inputs = torch.randn(len(slices), tokens, rank, generator=generator, device=device) * 0.1
        self.weights = [
            (torch.randn(MAX_LORAS, width, rank, generator=generator, device=device) * 0.1).to(torch.bfloat16)
            for width in slices
        ]
        self.start = torch.randn(tokens, sum(slices), generator=generator, device=device).to(torch.bfloat16)
        self.output = torch.empty_like(self.start)
        self.tokens = tokens

    def run(self) -> torch.Tensor:
        """The output after one expand added to `start`; the GPU time of the expand alone is `last_ms`."""
        self.output.copy_(self.start)
        began, ended = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        began.record()
        lora_expand_op._lora_expand(
            self.inputs, self.weights, self.output, *self.meta.meta_args(self.tokens, False), add_inputs=True
        )
        ended.record()
        ended.synchronize()
        self.last_ms = began.elapsed_time(ended)
        return self.output


def time_config(case: ExpandCase, config: dict | None, repeat: int) -> tuple[float, torch.Tensor]:
    """Median GPU milliseconds of `case` under `config` (None: vLLM's own choice), and its output."""
    original = lora_expand_op.get_lora_op_configs
    if config is not None:
        lora_expand_op.get_lora_op_configs = lambda *args, **kwargs: config
    try:
        output = case.run().clone()  # compiles this configuration's kernel
        times = []
        for _ in range(repeat):
            case.run()
            times.append(case.last_ms)
    finally:
        lora_expand_op.get_lora_op_configs = original
    return statistics.median(times), output


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON report, rewritten after each layer")
    parser.add_argument("--model", type=Path, help="a model folder whose config.json gives the shapes")
    parser.add_argument("--tokens", type=int, nargs="+", default=[65536, 8192], help="step sizes")
    parser.add_argument("--rank", type=int, default=64, help="kotae's max_lora_rank")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure (the median is kept)")
    args = parser.parse_args()
    device = torch.device("cuda")
    shape = generator_shape(args.model)
    report: dict[str, object] = {"gpu": torch.cuda.get_device_name(), "rank": args.rank, "steps": {}}
    began = time.perf_counter()
    for tokens in args.tokens:
        step: dict[str, object] = {}
        for slices, names in layer_slices(shape).items():
            layer = " and ".join(names)
            case = ExpandCase(slices, tokens, args.rank, device)
            default = get_lora_op_configs(
                "expand", MAX_LORAS + 1, tokens, max(slices), args.rank, len(slices), add_inputs=True
            )
            default_ms, reference = time_config(case, None, args.repeat)
            rows = []
            for candidate in CANDIDATES:
                try:
                    took, output = time_config(case, candidate, args.repeat)
                except Exception as error:  # a tile the GPU cannot hold: Triton's out-of-resources
                    rows.append({**candidate, "ms": float("inf"), "error": str(error)[:200]})
                    continue
                difference = (output.float() - reference.float()).abs().max().item()
                rows.append({**candidate, "ms": took, "max_abs_difference": difference})
            rows.sort(key=lambda row: row["ms"])
            step[layer] = {
                "slices": slices,
                "per_block": len(names),
                "default": {**default, "ms": default_ms},
                "candidates": rows,
            }
            print(f"{tokens} {layer}: default {default_ms:.3f} ms, best {rows[0]}", flush=True)
            totals = {
                "default_ms": shape.layers
                * sum(entry["per_block"] * entry["default"]["ms"] for entry in step.values()),
                "best_ms": shape.layers
                * sum(entry["per_block"] * entry["candidates"][0]["ms"] for entry in step.values()),
            }
            report["steps"][str(tokens)] = {"layers": step, "one_step_all_layers": totals}  # type: ignore[index]
            report["seconds"] = time.perf_counter() - began
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
