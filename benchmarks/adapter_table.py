"""Several adapters on several QA sets over one engine start (`kotae eval` in-process, the settings' model):
a run directory per adapter and set under --out, and table.md with a row each, HasAns and NoAns apart
where a set has unanswerable questions (`benchmarks/noans_set.py`).

    KOTAE_GENERATOR=gemma-3-270m-w4a16 KOTAE_ADAPTER_DIR=adapters python benchmarks/adapter_table.py \\
        --adapter default tuned --data jsquad-valid-dev-mixed.jsonl jaquad-dev.jsonl --out runs/adapters

A run directory that already holds metrics.json is read, not run again.
"""

import argparse
import asyncio
from pathlib import Path

from kotae.core.config import get_settings
from kotae.evals.compare import BASE_MODEL, MISSING, load_run, quality
from kotae.evals.schema import EvalMetrics

HEADER = (
    "| adapter | data | model | quantization | n | exact | partial | char-F1 | HasAns exact / partial "
    "| NoAns accuracy | recall@5 | answering s |\n"
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    args = _arguments()
    runs = asyncio.run(run_all(args.adapter, args.data, args.out, args.top_k, args.limit))
    table = "\n".join([HEADER, *(row(metrics) for metrics in runs)]) + "\n"
    (args.out / "table.md").write_text(table, encoding="utf-8")
    print(table, end="")


async def run_all(
    adapters: list[str], sets: list[Path], out: Path, top_k: int | None, limit: int | None
) -> list[EvalMetrics]:
    """Every adapter on every set, in that order; the runs not yet finished share one pipeline."""
    # Imported here, not at the top: vLLM's CPU workers re-import this script, and the pipeline's numba
    # (llvmlite) then breaks their kernel registration.
    from kotae.evals.config import EvalConfig
    from kotae.evals.runner import evaluate
    from kotae.runtime import build_pipeline

    wanted = [
        (adapter, data, out / f"{adapter or BASE_MODEL}-{data.stem}") for adapter in adapters for data in sets
    ]
    left = [run for run in wanted if not (run[2] / "metrics.json").is_file()]
    if left:
        pipeline = build_pipeline(get_settings(), workload="batch")
        try:
            for adapter, data, folder in left:
                config = EvalConfig(data=data, adapter=adapter, top_k=top_k, limit=limit, out=folder)
                print(row((await evaluate(config, pipeline)).metrics), flush=True)
        finally:
            pipeline.engine.shutdown()
    return [load_run(folder) for _, _, folder in wanted]


def row(metrics: EvalMetrics) -> str:
    """One run as a table row."""
    run, split = metrics.run, metrics.abstention
    has_ans = split.has_ans if split is not None and split.no_ans_n else None
    no_ans = split.no_ans_accuracy if split is not None and split.no_ans_n else None
    scores = {name: MISSING if value is None else f"{value:.3f}" for name, value in quality(metrics).items()}
    cells = [
        run.adapter or BASE_MODEL,
        run.dataset,
        run.model,
        run.quantization or MISSING,
        str(run.n),
        scores["exact"],
        scores["partial"],
        scores["char-F1"],
        MISSING if has_ans is None else f"{has_ans.exact:.3f} / {has_ans.partial:.3f}",
        MISSING if no_ans is None else f"{no_ans:.3f}",
        scores["recall@5"],
        f"{metrics.speed.wall_s:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", nargs="+", required=True, help="Adapter names ('' for the base model).")
    parser.add_argument(
        "--data", nargs="+", type=Path, required=True, help="QA sets, as `kotae eval --data`."
    )
    parser.add_argument("--out", type=Path, required=True, help="Folder of the run directories and table.md.")
    parser.add_argument("--top-k", type=int, help="Passages per prompt (default: settings).")
    parser.add_argument("--limit", type=int, help="Only the first N questions of each set.")
    return parser.parse_args()


if __name__ == "__main__":
    main()
