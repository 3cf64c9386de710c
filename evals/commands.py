"""`kotae eval`: score a model (and adapter) on a QA set; `kotae eval compare`: runs side by side.

The baseline on the real model:  kotae eval --data ../shared/data/qa/jsquad-valid.jsonl --limit 300
"""

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kotae.core.cli_options import config_options, with_options
from kotae.evals.compare import (
    load_run,
    markdown_table,
    mismatches,
    rich_table,
    run_name,
    to_markdown,
    to_rich,
    write_chart,
)
from kotae.evals.config import EvalConfig
from kotae.evals.paired import COLUMNS as PAIRED_COLUMNS
from kotae.evals.paired import TEXT_COLUMNS as PAIRED_TEXT_COLUMNS
from kotae.evals.paired import paired_rows
from kotae.evals.schema import AbstentionMetrics

eval_app = typer.Typer(no_args_is_help=True)
console = Console()


@eval_app.callback(invoke_without_command=True)
@with_options(config_options(EvalConfig, defaults={"data": None}), into="options")
def evaluate(context: typer.Context, *, options: dict[str, Any]) -> None:
    """Answer every question of --data and score the answers: exact, partial, char-F1, recall, speed;
    with unanswerable questions in --data, HasAns and NoAns apart (SQuAD 2.0)."""
    if context.invoked_subcommand is not None:
        return
    data: Path | None = options["data"]
    if data is None:  # not required of `kotae eval compare`, which shares these options' command group
        raise typer.BadParameter("give the questions to ask with --data FILE", param_hint="--data")
    # The runner pulls in the pipeline (vLLM, faiss, numba): only when a run is asked for.
    from kotae.evals.runner import run_eval

    config = EvalConfig(**options)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        # The bar stands still while models load and the index opens, then counts answers.
        task = progress.add_task(data.name, total=None)
        report = run_eval(
            config, on_progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    console.print(rich_table([report.metrics]))
    split = report.metrics.abstention
    if split is not None and split.no_ans_n:
        console.print(abstention_line(split))
    retrieval = report.metrics.retrieval
    if retrieval is not None and retrieval.recall_at[max(retrieval.recall_at)] == 0:
        console.print(
            "[yellow]note:[/] no gold passage was retrieved for any question: is the index (KOTAE_INDEX) "
            "built from the corpus these questions were written on?"
        )
    speed = report.metrics.speed
    console.print(
        f"{report.metrics.run.n} questions in {speed.wall_s:.1f} s ({speed.questions_per_s:.2f}/s)"
        + (f", {report.metrics.errors} failed" if report.metrics.errors else "")
        + f" · written to {report.out_dir}",
        style="dim",
    )


@eval_app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories (or their metrics.json)."),
    png: Path | None = typer.Option(None, help="Also draw the comparison as a PNG chart here."),
    markdown: bool = typer.Option(False, help="Print the tables as markdown instead."),
    paired: bool = typer.Option(
        False,
        help="Also compare every run with the first question by question (from their predictions.jsonl): "
        "exact gained and lost, and the standard error of the difference, over all questions and the "
        "answerable ones.",
    ),
) -> None:
    """The runs side by side: model / adapter / quantization, scores, runtime, GPU memory."""
    if paired and len(runs) < 2:
        raise typer.BadParameter("--paired compares runs with the first: give two runs or more")
    loaded = [load_run(path) for path in runs]
    for note in mismatches(loaded):
        console.print(f"[yellow]note:[/] {note}")
    if markdown:
        # Plain text: rich would wrap the rows at the console's width and break the table.
        typer.echo(markdown_table(loaded))
    else:
        console.print(rich_table(loaded))
    if paired:
        rows = paired_rows(runs, [run_name(run) for run in loaded])
        if markdown:
            typer.echo("\n" + to_markdown(PAIRED_COLUMNS, rows, PAIRED_TEXT_COLUMNS))
        else:
            console.print(to_rich(PAIRED_COLUMNS, rows, PAIRED_TEXT_COLUMNS))
    if png is not None:
        write_chart(loaded, png)
        console.print(f"chart written to {png}", style="dim")


def abstention_line(split: AbstentionMetrics) -> str:
    """HasAns and NoAns scores in one line, as SQuAD 2.0 reports them."""
    has = split.has_ans
    has_text = "—" if has is None else f"exact {has.exact:.3f}, partial {has.partial:.3f}"
    abstained = "" if split.has_ans_abstained is None else f", abstained {split.has_ans_abstained:.3f}"
    accuracy = split.no_ans_accuracy or 0.0
    no_ans = f"NoAns ({split.no_ans_n}): accuracy {accuracy:.3f}"
    return f"HasAns ({split.has_ans_n}): {has_text}{abstained} · {no_ans}"
