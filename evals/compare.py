"""Runs side by side: the comparison table (terminal and markdown) and its chart.

One row per run: model / adapter / quantization | exact | partial | char-F1 | recall@5 | runtime | GPU MB.
Scores are 0–1 means over the run's questions; runtime is the run's answering wall time (model loading
excluded); GPU MB is the peak nvidia-smi showed for the run ("—" on CPU or over HTTP).
"""

from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.table import Table

from kotae.core.errors import InputError
from kotae.evals.schema import METRICS_FILE, EvalMetrics

COLUMNS = ("model", "adapter", "quantization", "exact", "partial", "char-F1", "recall@5", "runtime", "GPU MB")
NAME_COLUMNS = COLUMNS[:3]
QUALITY = ("exact", "partial", "char-F1", "recall@5")
"""The columns drawn as bars in the chart (all 0–1)."""
MISSING = "—"
BASE_MODEL = "base"
"""How a run without adapter is shown."""


def load_run(path: Path) -> EvalMetrics:
    """The metrics of a run directory (or of its `metrics.json` named directly)."""
    file = path / METRICS_FILE if path.is_dir() else path
    if not file.is_file():
        raise InputError(path, None, "not an eval run: no metrics.json")
    try:
        return EvalMetrics.model_validate_json(file.read_bytes())
    except ValidationError as error:
        raise InputError(
            file, None, f"not a kotae eval metrics file ({error.error_count()} problems)"
        ) from error


def quality(metrics: EvalMetrics) -> dict[str, float | None]:
    """The 0–1 score columns of a run; recall@5 is None where retrieval was not scored."""
    recall = metrics.retrieval.recall_at.get(5) if metrics.retrieval else None
    answer = metrics.answer
    return {"exact": answer.exact, "partial": answer.partial, "char-F1": answer.char_f1, "recall@5": recall}


def cells(metrics: EvalMetrics) -> list[str]:
    """One table row as text, in `COLUMNS` order."""
    run = metrics.run
    scores = [MISSING if value is None else f"{value:.3f}" for value in quality(metrics).values()]
    gpu = metrics.memory.gpu_peak_mb
    return [
        run.model,
        run.adapter or BASE_MODEL,
        run.quantization or MISSING,
        *scores,
        f"{metrics.speed.wall_s:.1f} s",
        MISSING if gpu is None else f"{gpu:,.0f}",
    ]


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """A markdown table whose first `text_columns` columns are left-aligned and the rest (figures) right."""
    rule = "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(columns))) + "|"
    return "\n".join([markdown_row(columns), rule, *(markdown_row(row) for row in rows)])


def to_rich(columns: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> Table:
    """The same table for rich to print."""
    table = Table()
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < text_columns else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_row(row: Sequence[str]) -> str:
    return "| " + " | ".join(row) + " |"


def markdown_table(runs: Sequence[EvalMetrics]) -> str:
    return to_markdown(COLUMNS, [cells(run) for run in runs], len(NAME_COLUMNS))


def rich_table(runs: Sequence[EvalMetrics]) -> Table:
    """The runs for the terminal, with a label column when any run has one."""
    if any(run.run.label for run in runs):
        rows = [[run.run.label or "", *cells(run)] for run in runs]
        return to_rich(["label", *COLUMNS], rows, len(NAME_COLUMNS) + 1)
    return to_rich(COLUMNS, [cells(run) for run in runs], len(NAME_COLUMNS))


def mismatches(runs: Sequence[EvalMetrics]) -> list[str]:
    """Why the runs may not be comparable (different data, size or context mode); empty when they are."""
    notes = []
    for field in ("dataset", "n", "contexts", "top_k"):
        values = {str(getattr(run.run, field)) for run in runs}
        if len(values) > 1:
            notes.append(f"runs differ in {field}: {', '.join(sorted(values))}")
    return notes


def run_name(metrics: EvalMetrics) -> str:
    run = metrics.run
    return run.label or f"{run.model} / {run.adapter or BASE_MODEL} / {run.quantization or MISSING}"


def write_chart(runs: Sequence[EvalMetrics], png: Path) -> None:
    """Grouped bars of the quality columns per run, and the runtimes beside them."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    names = [run_name(run) for run in runs]
    figure, (scores_axis, time_axis) = plt.subplots(
        1, 2, figsize=(12, 1.5 + 0.6 * len(runs)), gridspec_kw={"width_ratios": [3, 1]}
    )
    height = 0.8 / len(QUALITY)
    for offset, column in enumerate(QUALITY):
        values = [quality(run)[column] or 0.0 for run in runs]
        positions = [i + (offset - (len(QUALITY) - 1) / 2) * height for i in range(len(runs))]
        scores_axis.barh(positions, values, height=height, label=column)
    scores_axis.set_yticks(range(len(runs)), names)
    scores_axis.invert_yaxis()
    scores_axis.set_xlim(0, 1)
    scores_axis.set_xlabel("score (0–1)")
    scores_axis.legend(
        ncols=len(QUALITY), loc="lower left", bbox_to_anchor=(0, 1), fontsize="small", frameon=False
    )
    time_axis.barh(range(len(runs)), [run.speed.wall_s for run in runs], color="gray")
    time_axis.set_yticks(range(len(runs)), [""] * len(runs))
    time_axis.invert_yaxis()
    time_axis.set_xlabel("runtime (s)")
    if not mismatches(runs):
        figure.suptitle(
            f"{runs[0].run.dataset} · {runs[0].run.n} questions · {runs[0].run.contexts} contexts"
        )
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)
    plt.close(figure)
