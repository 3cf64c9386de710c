"""How long the host spends in vLLM's LoRA metadata update per engine step, vLLM's own against kotae's
(`kotae.rag.lora_metadata`), on an eval's step shapes.

On a GPU, each update is called while the device still runs earlier work (`--busy-ms` of it, as the previous
step's kernels would be): vLLM's waits for that work to end, kotae's should not. `STEP_LABEL_busy_ms` says how
long that work ran. On a CPU there is no queue, and the figures are the host's own work.

    python benchmarks/lora_metadata.py --out /tmp/r/lora-metadata.json
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from vllm.config.lora import LoRAConfig
from vllm.lora.layers import LoRAMapping
from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta
from vllm.lora.punica_wrapper import punica_gpu

from kotae.rag import lora_metadata

STEPS = {"prefill": (90, 728), "decode": (980, 1)}
"""An eval's steps: 90 prompts of 728 tokens (65,520 tokens), then 980 sequences of one token each."""


def device_work(device: torch.device) -> Callable[[float], Callable[[], float]]:
    """A function that queues about that many milliseconds of work on `device` and returns how to read,
    once the device is done, how long the work took there (nothing and 0 on a CPU): a kernel that spins,
    timed here after a warm-up, so that the GPU's clock is up when its rate is taken."""
    if device.type != "cuda":
        return lambda milliseconds: lambda: 0.0

    def spin(cycles: int) -> Callable[[], float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()

        def took() -> float:
            end.synchronize()
            return start.elapsed_time(end)

        return took

    spin(10_000_000)()
    cycles = 50_000_000
    per_ms = cycles / spin(cycles)()
    return lambda milliseconds: spin(int(milliseconds * per_ms))


def measure(
    update: Callable[..., None],
    wrapper: punica_gpu.PunicaWrapperGPU,
    mapping: LoRAMapping,
    queue_work: Callable[[], Callable[[], float]],
    repeat: int,
) -> tuple[float, float]:
    """Median host milliseconds of one update made behind `queue_work`'s device work, and the median
    milliseconds that work ran on the device."""
    times, busy = [], []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        queued = queue_work()
        began = time.perf_counter()
        update(wrapper, mapping, [1], 1, 262_144)
        times.append((time.perf_counter() - began) * 1e3)
        busy.append(queued())
    return statistics.median(times), statistics.median(busy)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    parser.add_argument("--busy-ms", type=float, default=50.0, help="device work queued before each update")
    parser.add_argument("--repeat", type=int, default=20, help="updates per figure (the median is kept)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # The module binds the metadata class only where Triton runs; vLLM's own method, whatever the plugin did.
    punica_gpu.LoRAKernelMeta = LoRAKernelMeta
    vllm_update = punica_gpu.PunicaWrapperGPU.__dict__["update_metadata"]
    if vllm_update is lora_metadata.update_metadata:
        raise SystemExit("kotae's plugin already replaced vLLM's update: run with VLLM_PLUGINS= (none)")
    queue_work = partial(device_work(device), args.busy_ms)
    config = LoRAConfig(max_loras=1, max_lora_rank=64)
    wrapper = punica_gpu.PunicaWrapperGPU(65_536, 1024, device=device, lora_config=config)
    report: dict[str, object] = {
        "device": str(device),
        "busy_ms": args.busy_ms if device.type == "cuda" else 0,
    }
    for step, (rows, tokens) in STEPS.items():
        # As vLLM's input batch builds it: tuples of numpy integers, one LoRA id per request, repeated.
        lora_ids = np.ones(rows, dtype=np.int64)
        mapping = LoRAMapping(tuple(lora_ids.repeat(tokens)), tuple(lora_ids), is_prefill=True)
        for label, update in (("vllm", vllm_update), ("kotae", lora_metadata.update_metadata)):
            measure(update, wrapper, mapping, queue_work, 2)  # warm-up
            took, busy = measure(update, wrapper, mapping, queue_work, args.repeat)
            report[f"{step}_{label}_ms"] = took
            report[f"{step}_{label}_busy_ms"] = busy
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
