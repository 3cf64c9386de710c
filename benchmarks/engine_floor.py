"""What the engine alone takes for an eval's prompts, and where its GPU time goes (issue 20).

The prompts are those `seed_table.py`'s `prompts` stage wrote (kotae's retrieval and prompt format). One
vLLM engine, started as `kotae eval` starts it (batch workload), answers them all at once:

  full      with the adapter, the eval's sampling (greedy, --max-tokens)
  strings   the same, ended by the stop strings alone, without kotae's stop tokens (`kotae.rag.stop_tokens`):
            its answers must be full's, as many as full's own rounds are (`strings_different_answers`)
  loops     the same, with looping answers generated to --max-tokens before the loop guard cuts them,
            without the engine core's loop stop (`kotae.rag.loop_guard`): the same (`loops_different_answers`)
  prefill   with the adapter, one new token each: the prompts' prefill alone
  base      without the adapter, one new token each: what the LoRA costs the prefill
  profiled  `full` again under vLLM's torch profiler (slower): the GPU's busy share of the wall, the
            kernels it ran longest, and the host's time inside and between the engine's steps

The runs go in `--rounds` rounds (the host's speed moves an eval's time by a second from run to run; each
run's median is `LABEL_s`, every round's `LABEL_rounds_s`); new tokens and answers are the last round's.
How many answers a GPU changes from run to run is `full_again_different_answers`: full's last round
against its first.
The prefix cache is emptied before each run, so every run prefills as the eval does. `--runs` picks some
(a CPU is slow for all); `--adapter none` answers with the base model throughout.

    python benchmarks/engine_floor.py --prompts /tmp/r/http/prompts.jsonl --out /tmp/r/engine-floor
"""

import argparse
import asyncio
import gzip
import json
import statistics
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

from kotae.rag.engine_protocol import Sampling

KERNEL_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}


def gpu_time(trace: dict, top: int = 25) -> dict[str, object]:
    """From a torch profiler trace: the span of its GPU work, the time some GPU work ran (overlapping
    kernels counted once), and the kernels that ran longest in all."""
    events = [
        event
        for event in trace.get("traceEvents", [])
        if event.get("ph") == "X" and event.get("cat") in KERNEL_CATEGORIES
    ]
    if not events:
        return {"kernels": 0}
    spans = sorted((float(event["ts"]), float(event["ts"]) + float(event["dur"])) for event in events)
    busy, reach = 0.0, spans[0][0]
    for start, end in spans:
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    totals: Counter[str] = Counter()
    for event in events:
        totals[event["name"][:120]] += float(event["dur"])
    span_us = spans[-1][1] - spans[0][0]
    return {
        "kernels": len(events),
        "span_s": span_us / 1e6,
        "busy_s": busy / 1e6,
        "busy_share": busy / span_us if span_us else 0.0,
        "top": [{"name": name, "s": us / 1e6} for name, us in totals.most_common(top)],
    }


STEP = "execute_context_"
"""How vLLM's worker names each engine step in a trace (its prefill requests and tokens, then its decodes)."""


def step_times(trace: dict, top: int = 10) -> dict[str, object]:
    """From the engine's trace: the host's time inside its steps (preparing inputs, launching kernels), its
    time between them (scheduling, sampling, outputs), the GPU's time per step, the longest of each, and
    every step's timeline."""

    def spans(category: str) -> list[tuple[float, float, str]]:
        return sorted(
            (float(event["ts"]), float(event["dur"]), event["name"])
            for event in trace.get("traceEvents", [])
            if event.get("ph") == "X" and event.get("cat") == category and event["name"].startswith(STEP)
        )

    host, gpu = spans("user_annotation"), spans("gpu_user_annotation")
    if not host:
        return {"steps": 0}
    gaps = [(start - (before + took), name) for (before, took, _), (start, _, name) in pairwise(host)]

    def longest(rows: list[tuple[float, str]]) -> list[dict[str, object]]:
        return [{"step": name, "s": us / 1e6} for us, name in sorted(rows, reverse=True)[:top]]

    # Each step in turn, times in ms from the first step's start; its GPU span where each step has one.
    paired = gpu if len(gpu) == len(host) else [None] * len(host)
    timeline = [
        {
            "step": name,
            "host_at": (start - host[0][0]) / 1e3,
            "host": took / 1e3,
            "gpu_at": None if on_gpu is None else (on_gpu[0] - host[0][0]) / 1e3,
            "gpu": None if on_gpu is None else on_gpu[1] / 1e3,
        }
        for (start, took, name), on_gpu in zip(host, paired, strict=True)
    ]
    return {
        "steps": len(host),
        "span_s": (host[-1][0] + host[-1][1] - host[0][0]) / 1e6,
        "host_in_steps_s": sum(took for _, took, _ in host) / 1e6,
        "host_between_steps_s": sum(gap for gap, _ in gaps) / 1e6,
        "gpu_in_steps_s": sum(took for _, took, _ in gpu) / 1e6,
        "longest_host_steps": longest([(took, name) for _, took, name in host]),
        "longest_gaps_before": longest(gaps),
        "longest_gpu_steps": longest([(took, name) for _, took, name in gpu]),
        "timeline": timeline,
    }


def runs(
    answering: Sampling, adapter: str | None
) -> dict[str, tuple[Sampling, str | None, dict[str, object]]]:
    """Each run but `profiled`: its sampling, its adapter, and the engine's early stops it sets aside."""
    return {
        "full": (answering, adapter, {}),
        "strings": (answering, adapter, {"stop_tokens": None}),
        "loops": (answering, adapter, {"ends_loops": False}),
        "prefill": (Sampling(max_tokens=1), adapter, {}),
        "base": (Sampling(max_tokens=1), None, {}),
    }


RUNS = (*runs(Sampling(), None), "profiled")


def different_answers(answers: dict[str, list[str]]) -> dict[str, int]:
    """How many of each run's answers differ from `full`'s. A GPU's greedy answers change with the company
    a request keeps in its batches (bf16 sums round differently): `full_again` (full's first round, against
    its last) counts that share."""
    if "full" not in answers:
        return {}
    return {
        f"{label}_different_answers": sum(
            mine != full for mine, full in zip(answers[label], answers["full"], strict=True)
        )
        for label in ("strings", "loops", "full_again")
        if label in answers
    }


async def measure(args: argparse.Namespace) -> dict[str, object]:
    from kotae.core.config import get_settings
    from kotae.models.store import ModelStore
    from kotae.rag.engine import VLLMEngine

    settings = get_settings()
    prompts = [json.loads(line)["prompt"] for line in args.prompts.read_text(encoding="utf-8").splitlines()]
    prompts = prompts[: args.limit]
    profile_dir = args.out / "profile"
    started = time.perf_counter()
    model = ModelStore(settings.home).generator(settings.generator)
    engine = VLLMEngine.configure(model, settings, workload="batch", profile_dir=profile_dir).launch()
    adapter = None if args.adapter == "none" else args.adapter
    if adapter:
        await engine.load_adapter(adapter, settings.adapter_dir / adapter)
    figures: dict[str, object] = {"prompts": len(prompts), "start_s": time.perf_counter() - started}
    answering = Sampling(max_tokens=args.max_tokens)
    await engine.complete_many(prompts[: args.warmup], answering, adapter)
    answers: dict[str, list[str]] = {}
    seconds: dict[str, list[float]] = {}
    first_full: list[str] | None = None
    # Rounds of every run in turn, so that a drift of the host's speed reaches each run alike.
    for _ in range(args.rounds):
        for label, (sampling, run_adapter, aside) in runs(answering, adapter).items():
            if label not in args.runs:
                continue
            kept = {name: getattr(engine, name) for name in aside}
            for name, value in aside.items():
                setattr(engine, name, value)
            await engine.reset_prefix_cache()
            began = time.perf_counter()
            completions = await engine.complete_many(prompts, sampling, run_adapter)
            seconds.setdefault(label, []).append(time.perf_counter() - began)
            figures[f"{label}_new_tokens"] = sum(c.completion_tokens for c in completions)
            answers[label] = [c.text for c in completions]
            if label == "full" and first_full is None:
                first_full = answers[label]
            for name, value in kept.items():
                setattr(engine, name, value)
    for label, each in seconds.items():
        figures[f"{label}_s"] = statistics.median(each)
        figures[f"{label}_rounds_s"] = each
    if first_full is not None and args.rounds > 1:
        answers["full_again"] = first_full
    figures.update(different_answers(answers))
    if "profiled" in args.runs:
        await engine.reset_prefix_cache()
        await engine.start_profile()
        began = time.perf_counter()
        await engine.complete_many(prompts, answering, adapter)
        figures["profiled_s"] = time.perf_counter() - began
        await engine.stop_profile()
    engine.shutdown()
    # The engine core's trace; should vLLM write others, the one that holds the GPU's work.
    traces = [read_trace(path) for path in sorted(profile_dir.glob("*.pt.trace.json*"))]
    if traces:
        profile, engine_trace = max(
            ((gpu_time(trace), trace) for trace in traces), key=lambda p: p[0]["kernels"]
        )
        figures["profile"] = profile
        figures["steps"] = step_times(engine_trace)
    return figures


def read_trace(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return json.load(stream)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--prompts", type=Path, required=True, help="prompts.jsonl of seed_table's prompts stage"
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder (figures.json, profile/)")
    parser.add_argument(
        "--adapter", default="default", help="adapter name under KOTAE_ADAPTER_DIR; none: the base model"
    )
    parser.add_argument("--limit", type=int, default=980, help="first N prompts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS), help="the runs to make")
    parser.add_argument("--warmup", type=int, default=64, help="prompts answered before the runs")
    parser.add_argument(
        "--rounds", type=int, default=3, help="each run this many times, in turn; LABEL_s is the median"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    figures = asyncio.run(measure(args))
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "profile"}, indent=1))


if __name__ == "__main__":
    main()
