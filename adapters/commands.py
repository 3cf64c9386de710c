"""`kotae train sft|cpt|examples|shrink|average|reranker`, `kotae merge`, `kotae quantize`.

The options are the config dataclasses' fields (`kotae.core.cli_options`): `--help` shows the defaults a
run really uses and says what each field's docstring says, and the two never drift apart.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kotae.adapters.config import CPTRunConfig, LoraSpec, Method, RerankerRunConfig, SFTRunConfig
from kotae.core.cli_options import Command, config_defaults, config_options, field_help, option, with_options
from kotae.core.config import get_settings

train_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


# The options that are no config field as they are: a model store name, or a config's tuple given as text.
Base = Annotated[str, typer.Option(help="Base model: a model store name (gemma-3-270m) or a model folder.")]
Targets = Annotated[str, typer.Option(help="Comma-separated. " + field_help(LoraSpec)["target_modules"])]
Overwrite = Annotated[bool, typer.Option(help="Replace the output if it exists.")]

# The shared options that are `TrainingConfig` fields of the same name.
_TRAINER_KNOBS = (
    "learning_rate",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accumulation",
    "max_length",
    "packing",
    "gradient_checkpointing",
    "load_in_4bit",
    "neftune_noise_alpha",
    "eval_fraction",
    "eval_steps",
    "probe_every",
    "probe_count",
    "knowledge_probe",
    "wandb",
    "seed",
    "save_steps",
    "resume",
    "init_adapter",
    "tokenize_workers",
)


@dataclass(frozen=True, slots=True)
class TrainingOptions:
    """The options `train sft` and `train cpt` share, as given on the command line."""

    given: dict[str, Any]

    @property
    def overwrite(self) -> bool:
        return self.given["overwrite"]

    def config_fields(self) -> dict[str, Any]:
        """The `TrainingConfig` fields they set: the LoRA shape and the trainer knobs."""
        given = self.given
        lora = _lora(given["r"], given["alpha"], given["dropout"], given["target_modules"])
        return {"lora": lora} | {name: given[name] for name in _TRAINER_KNOBS}


def with_training_options(config: type) -> Callable[[Command], Command]:
    """Gives a training command the shared options, with the defaults and help of `config` (its run
    config); the command receives them as its keyword `training` (`TrainingOptions`)."""
    lora: LoraSpec = config_defaults(config)["lora"]
    options = [
        *config_options(LoraSpec, ("r", "alpha", "dropout"), defaults=asdict(lora)),
        option("target_modules", Targets, ",".join(lora.target_modules)),
        *config_options(config, _TRAINER_KNOBS),
        option("overwrite", Overwrite, False),
    ]
    return with_options(options, into="training", make=TrainingOptions)


def resolve_base(base: str) -> Path:
    """A model folder as it is, or a name from the model store (pulled when it is the default)."""
    from kotae.models.store import ModelStore

    return ModelStore(get_settings().home).generator(base)


def _lora(
    r: int, alpha: int, dropout: float, targets: str, modules_to_save: tuple[str, ...] = ()
) -> LoraSpec:
    modules = tuple(name.strip() for name in targets.split(",") if name.strip())
    return LoraSpec(
        r=r, alpha=alpha, dropout=dropout, target_modules=modules, modules_to_save=modules_to_save
    )


@train_app.command("sft")
@with_training_options(SFTRunConfig)
@with_options(
    config_options(
        SFTRunConfig, ("out", "data", "mix", "index", "examples", "contexts", "prompt_format", "negatives")
    ),
    into="own",
)
def sft(base: Base, *, own: dict[str, Any], training: TrainingOptions) -> None:
    """LoRA SFT in the adapter's prompt format: QA (gold passage + retrieved distractors → answer) and
    instruction records (instruction + input → output)."""
    from kotae.adapters.sft import train_sft

    config = SFTRunConfig(
        base=resolve_base(base),
        context_token_budget=get_settings().context_token_budget,
        **own,
        **training.config_fields(),
    )
    train_sft(config, console, training.overwrite)


@train_app.command("cpt")
@with_training_options(CPTRunConfig)
@with_options(config_options(CPTRunConfig, ("out", "text", "train_embeddings")), into="own")
def cpt(base: Base, *, own: dict[str, Any], training: TrainingOptions) -> None:
    """Continued pre-training: next-token loss on raw passages, to put their knowledge into the weights
    (then `kotae merge`, then `kotae train sft` on the merged model)."""
    from kotae.adapters.cpt import train_cpt

    config = CPTRunConfig(base=resolve_base(base), **own, **training.config_fields())
    train_cpt(config, console, training.overwrite)


@train_app.command("examples")
@with_options(config_options(SFTRunConfig, ("contexts", "prompt_format", "negatives", "seed")), into="sft")
def examples(
    base: Base,
    data: Annotated[Path, typer.Option(help="QA JSONL {qid, question, answers, gold_passage_ids}.")],
    index: Annotated[Path, typer.Option(help="Index with the gold passages; gives the distractors.")],
    out: Annotated[Path, typer.Option(help="Examples JSONL to write (.gz to compress).")],
    *,
    sft: dict[str, Any],
) -> None:
    """Build SFT examples (prompt + completion) without training: retrieval here, training elsewhere."""
    from kotae.adapters.sft import build_sft_examples, load_prompter
    from kotae.adapters.sft_examples import write_examples

    budget = get_settings().context_token_budget
    prompter = load_prompter(resolve_base(base), sft["prompt_format"])
    built = build_sft_examples(
        prompter, data, index, sft["contexts"], budget, sft["seed"], console, sft["negatives"]
    )
    write_examples(out, built)
    console.print(f"[green]wrote[/] {out}")


@train_app.command("shrink")
def shrink(
    adapter: Annotated[Path, typer.Option(help="Adapter folder to shrink (a plain LoRA).")],
    r: Annotated[int, typer.Option("--r", help="Rank of the new adapter (below the adapter's own).")],
    out: Annotated[Path, typer.Option(help="Adapter folder to write (atomically).")],
    overwrite: Overwrite = False,
) -> None:
    """A lower-rank copy of an adapter: each module's update cut to its best rank-r approximation (SVD)."""
    from kotae.adapters.shrink import shrink_adapter

    shrink_adapter(adapter, out, r, console, overwrite)


@train_app.command("average")
def average(
    adapter: Annotated[list[Path], typer.Option(help="Adapter folders to average (plain LoRAs, same base).")],
    out: Annotated[Path, typer.Option(help="Adapter folder to write (atomically).")],
    weight: Annotated[
        list[float] | None, typer.Option(help="One per --adapter, normalized to sum 1 (default: equal).")
    ] = None,
    r: Annotated[
        int | None, typer.Option("--r", help="Rank of the new adapter (default: the largest source rank).")
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """One adapter whose update is the weighted mean of several adapters' updates, cut to rank r (SVD)."""
    from kotae.adapters.average import average_adapters

    average_adapters(adapter, out, console, weight, r, overwrite)


@train_app.command("reranker")
@with_options(
    config_options(
        RerankerRunConfig,
        (
            *("data", "index", "out", "negatives", "max_length"),
            *("learning_rate", "epochs", "max_steps", "batch_size", "seed"),
        ),
    ),
    into="own",
)
def reranker(
    base: Annotated[
        str | None,
        typer.Option(
            help="Model to start from: a sentence-transformers or BERT-like folder, or a model store name "
            "(default: the configured embedder)."
        ),
    ] = None,
    overwrite: Overwrite = False,
    *,
    own: dict[str, Any],
) -> None:
    """A cross-encoder that re-orders hybrid retrieval's candidates (`KOTAE_RERANKER`): trained with binary
    cross-entropy on each question's gold passage against its hard negatives."""
    from kotae.adapters.reranker import train_reranker
    from kotae.models.store import ModelStore

    settings = get_settings()
    config = RerankerRunConfig(base=ModelStore(settings.home).embedder(base or settings.embedder), **own)
    train_reranker(config, console, overwrite)


def merge(
    base: Base,
    adapter: Annotated[Path, typer.Option(help="Adapter folder trained on BASE.")],
    out: Annotated[Path, typer.Option(help="Merged model folder to write (safetensors).")],
    overwrite: Overwrite = False,
) -> None:
    """Fold an adapter into its base model: a plain model folder (CPT → merge → SFT)."""
    from kotae.adapters.merge import merge_adapter

    merge_adapter(resolve_base(base), adapter, out, console, overwrite)


def quantize(
    model: Annotated[Path, typer.Option(help="Model folder to quantize (e.g. a merged model).")],
    out: Annotated[Path, typer.Option(help="Quantized model folder to write.")],
    calib: Annotated[
        list[Path],
        typer.Option(help="Calibration JSONL: passages {title, text} and/or examples {prompt, completion}."),
    ],
    method: Annotated[Method, typer.Option(help="gptq or awq.")] = "gptq",
    scheme: Annotated[
        str, typer.Option(help="Weight-only scheme: W4A16, W4A16_ASYM, W8A16 (gptq).")
    ] = "W4A16",
    python: Annotated[
        str | None,
        typer.Option(help="Interpreter for llm-compressor (default: KOTAE_QUANT_PYTHON, else this one)."),
    ] = None,
    site: Annotated[
        Path | None,
        typer.Option(
            help="Folder put first on its PYTHONPATH (default: KOTAE_QUANT_SITE, else .venv/quant-site)."
        ),
    ] = None,
    samples: Annotated[int, typer.Option(help="Calibration samples.")] = 512,
    max_seq_length: Annotated[int, typer.Option(help="Tokens per calibration sample.")] = 2048,
    group_size: Annotated[
        int | None,
        typer.Option(help="Weights sharing one scale: 32, 64 or 128 (default: the scheme's, 128)."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Quantize weights to 4 (or 8) bits with llm-compressor, in its own interpreter, for vLLM + LoRA."""
    from kotae.adapters.quantize import quantize_model

    settings = get_settings()
    quantize_model(
        model,
        method,
        scheme,
        calib,
        out,
        console,
        python or settings.quant_python,
        site or settings.quant_site,
        samples,
        max_seq_length,
        overwrite=overwrite,
        group_size=group_size,
    )
