"""The matmuls of kotae's generator (Gemma 3 270M's linear layers) in bf16 against vLLM's two W4A16 kernels
for Hopper, Machete (what vLLM picks for a compressed-tensors W4A16 model there) and Marlin: GPU
milliseconds of one step's matmuls over every layer, at an eval's prefill step (65,536 tokens), a server's
(8,192) and decode steps (1,024 and 128 sequences). Weights are random, quantized as kotae's W4A16 is
(4 bits, symmetric, groups of 128). Marlin is called as vLLM 0.26 calls it (the GPU kit's vLLM).

    python benchmarks/w4a16_kernels.py --out /tmp/r/w4a16-kernels.json
"""

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from lora_expand import generator_shape, merged_layers
from vllm import _custom_ops as ops
from vllm.model_executor.layers.quantization.utils.marlin_utils import (
    apply_gptq_marlin_linear,
    marlin_make_workspace_new,
)
from vllm.model_executor.layers.quantization.utils.marlin_utils_test import marlin_quantize
from vllm.model_executor.layers.quantization.utils.quant_utils import pack_rows, quantize_weights
from vllm.scalar_type import scalar_types

from kotae.rag.gpu_memory import ModelShape

GROUP_SIZE = 128
WEIGHT_TYPE = scalar_types.uint4b8


def layer_matmuls(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(inputs, outputs) of each linear layer as vLLM merges them."""
    return {name: (inputs, sum(slices)) for name, (inputs, slices) in merged_layers(shape).items()}


def kernels(
    inputs: int, outputs: int, device: torch.device
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """One random weight, as each kernel runs it."""
    weight = torch.randn(inputs, outputs, device=device, dtype=torch.bfloat16) * 0.05
    _, quantized, scales, _ = quantize_weights(weight, WEIGHT_TYPE, GROUP_SIZE, zero_points=False)
    packed = pack_rows(quantized, WEIGHT_TYPE.size_bits, inputs, outputs)
    machete_weight = ops.machete_prepack_B(
        packed.t().contiguous().t(), torch.bfloat16, WEIGHT_TYPE, torch.bfloat16
    )
    machete_scales = scales.to(torch.bfloat16).contiguous()
    _, marlin_weight, marlin_scales, g_idx, sort_indices, _ = marlin_quantize(
        weight, WEIGHT_TYPE, GROUP_SIZE, False
    )
    workspace = marlin_make_workspace_new(device)
    empty = torch.empty(0, dtype=torch.int, device=device)  # no zero points, no act-order: none to pass
    linear_weight = weight.t().contiguous()  # vLLM's unquantized layers keep (outputs, inputs)
    return {
        "bf16": lambda x: torch.nn.functional.linear(x, linear_weight),
        "machete": lambda x: ops.machete_mm(
            a=x,
            b_q=machete_weight,
            b_type=WEIGHT_TYPE,
            b_group_scales=machete_scales,
            b_group_size=GROUP_SIZE,
        ),
        "marlin": lambda x: apply_gptq_marlin_linear(
            input=x,
            weight=marlin_weight,
            weight_scale=marlin_scales,
            weight_zp=empty,
            g_idx=g_idx,
            g_idx_sort_indices=sort_indices,
            workspace=workspace,
            wtype=WEIGHT_TYPE,
            output_size_per_partition=outputs,
            input_size_per_partition=inputs,
            is_k_full=True,
            input_dtype=torch.bfloat16,
        ),
    }


def gpu_ms(run: Callable[[], torch.Tensor], repeat: int) -> float:
    """Median GPU milliseconds of `run`, after one untimed call."""
    run()
    times = []
    for _ in range(repeat):
        began, ended = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        began.record()
        run()
        ended.record()
        ended.synchronize()
        times.append(began.elapsed_time(ended))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    parser.add_argument("--model", type=Path, help="a model folder whose config.json gives the shapes")
    parser.add_argument("--tokens", type=int, nargs="+", default=[65536, 8192, 1024, 128], help="step sizes")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per figure (the median is kept)")
    args = parser.parse_args()
    device = torch.device("cuda")
    shape = generator_shape(args.model)
    matmuls = layer_matmuls(shape)
    layers = {name: kernels(*size, device) for name, size in matmuls.items()}
    report: dict[str, object] = {"gpu": torch.cuda.get_device_name(), "steps": {}}
    for tokens in args.tokens:
        step: dict[str, dict[str, float]] = {}
        for name, runs in layers.items():
            x = torch.randn(tokens, matmuls[name][0], device=device, dtype=torch.bfloat16)
            reference = runs["bf16"](x).float()
            scale = reference.abs().mean().item()
            step[name] = {}
            for kernel, run in runs.items():
                step[name][f"{kernel}_ms"] = gpu_ms(lambda run=run, x=x: run(x), args.repeat)
                error = (run(x).float() - reference).abs().mean().item()
                step[name][f"{kernel}_relative_error"] = error / scale
        kernel_names = next(iter(layers.values()))
        totals = {
            kernel: shape.layers * sum(row[f"{kernel}_ms"] for row in step.values())
            for kernel in kernel_names
        }
        report["steps"][str(tokens)] = {"layers": step, "one_step_all_layers_ms": totals}  # type: ignore[index]
        print(f"{tokens} tokens, every layer: {totals}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
