"""`kotae`: one command, a subcommand per job. Heavy imports (torch, vLLM) stay inside the commands."""

import asyncio
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kotae.adapters.commands import merge, quantize, train_app
from kotae.core.cli_options import overridden, settings_options, with_options
from kotae.core.config import Settings, get_settings
from kotae.core.errors import KotaeError
from kotae.evals.commands import eval_app
from kotae.indexer.commands import index_app
from kotae.models.commands import models_app
from kotae.rag.engine_protocol import Sampling
from kotae.server.commands import serve


# `kotae ask`: one question, answered on the same pipeline the server runs.
@with_options(settings_options(Settings, ("top_k", "max_tokens", "retrieval", "index")), into="overrides")
def ask(
    question: str = typer.Argument(..., help="The question, in Japanese."),
    adapter: str | None = typer.Option(
        None, help="Adapter (a folder name under the adapter dir); default: settings; '' for the base model."
    ),
    show_prompt: bool = typer.Option(False, help="Print the prompt sent to the model."),
    *,
    overrides: dict[str, Any],
) -> None:
    """Answer QUESTION and list the passages it came from."""
    settings = overridden(get_settings(), overrides)
    console = Console()
    with console.status("loading models and index…"):
        from kotae.runtime import build_pipeline, load_default_adapters

        pipeline = build_pipeline(settings)
    sampling = Sampling(max_tokens=settings.max_tokens)

    async def run() -> None:
        chosen = await load_default_adapters(pipeline, settings, adapter)
        [prepared] = pipeline.prepare_many([question], prompt_format=pipeline.prompt_format_of(chosen))
        if show_prompt:
            console.rule("prompt")
            console.print(prepared.prompt, markup=False, highlight=False)
        answers = await pipeline.answer_prepared([prepared], sampling, chosen)
        answer = answers[0]
        console.rule("answer" + (f" (adapter {chosen})" if chosen else ""))
        if answer.answerable:
            console.print(answer.text or "(no answer)", markup=False, highlight=False)
        else:
            console.print(answer.text, style="bold yellow", markup=False, highlight=False)
            console.print("answerable: false (the passages do not hold the answer)", style="yellow")
        title = "sources" if answer.answerable else "closest passages"
        table = Table("rank", "score", "id", "title", title=title)
        for rank, hit in enumerate(answer.sources, 1):
            table.add_row(str(rank), f"{hit.score:.3f}", hit.passage.id, hit.passage.title)
        console.print(table)
        console.print(
            f"retrieve {answer.timings.retrieve_ms:.0f} ms · generate {answer.timings.generate_ms:.0f} ms · "
            f"{answer.completion.completion_tokens} tokens",
            style="dim",
        )

    try:
        asyncio.run(run())
    finally:
        pipeline.shutdown()


app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="kotae (答え): Japanese question answering on your own documents and a local LLM.",
)
app.add_typer(models_app, name="models", help="Pull and list models.")
app.add_typer(index_app, name="index", help="Build and update passage indexes.")
app.command()(ask)
app.command()(serve)
app.add_typer(eval_app, name="eval", help="Score answers: exact, partial, char-F1, recall, speed.")
app.add_typer(train_app, name="train", help="Train LoRA adapters (SFT, CPT) and the reranker.")
app.command()(merge)
app.command()(quantize)

err = Console(stderr=True)


def main() -> None:
    try:
        app()
    except KotaeError as error:
        err.print(f"[bold red]error:[/] {error}")
        sys.exit(2)
