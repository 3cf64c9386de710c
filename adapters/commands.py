"""`kotae train sft|cpt|examples|shrink|average|reranker`, `kotae merge`, `kotae quantize`.

Option defaults are read from the config dataclasses, so `--help` shows the values a run really uses
and the two never drift apart.
"""

import functools
import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kotae.adapters.config import CPTRunConfig, LoraSpec, Method, RerankerRunConfig, SFTRunConfig
from kotae.core.config import get_settings
from kotae.rag.prompt import PromptFormat

train_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


def _defaults(cls: type) -> dict[str, Any]:
    return {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(cls)
        if f.default is not MISSING or f.default_factory is not MISSING
    }


SFT = _defaults(SFTRunConfig)
CPT = _defaults(CPTRunConfig)
RERANKER = _defaults(RerankerRunConfig)

# Options both training commands take (`with_training_options`); each command gives its own default.
Base = Annotated[str, typer.Option(help="Base model: a model store name (gemma-3-270m) or a model folder.")]
Out = Annotated[Path, typer.Option(help="Adapter folder to write (atomically, when training ends).")]
Rank = Annotated[int, typer.Option("--r", help="LoRA rank.")]
Alpha = Annotated[int, typer.Option(help="LoRA alpha (the update is scaled by alpha / r).")]
Dropout = Annotated[float, typer.Option(help="LoRA dropout.")]
Targets = Annotated[
    str,
    typer.Option(
        help="Comma-separated module names that get LoRA (default: every linear layer of the model's "
        "blocks, named as the model names them)."
    ),
]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate (cosine decay after warmup).")]
Epochs = Annotated[float, typer.Option(help="Passes over the training split.")]
MaxSteps = Annotated[
    int | None, typer.Option(help="Stop after this many optimizer steps (overrides epochs).")
]
BatchSize = Annotated[int, typer.Option(help="Sequences per forward pass.")]
GradAccumulation = Annotated[int, typer.Option(help="Forward passes per optimizer step.")]
MaxLength = Annotated[int, typer.Option(help="Longest tokenized example (packed row length).")]
Packing = Annotated[bool, typer.Option(help="Pack examples into max-length rows.")]
Checkpointing = Annotated[bool, typer.Option(help="Recompute activations in backward: less memory, slower.")]
LoadIn4bit = Annotated[
    bool,
    typer.Option(
        help="QLoRA: load the frozen base in 4-bit NF4 (bitsandbytes); the adapter serves on the base."
    ),
]
Neftune = Annotated[float | None, typer.Option(help="NEFTune noise alpha (e.g. 5); off when unset.")]
EvalFraction = Annotated[float, typer.Option(help="Share of examples held out for eval loss and probes.")]
EvalSteps = Annotated[int, typer.Option(help="Evaluate every this many steps.")]
ProbeEvery = Annotated[int, typer.Option(help="Answer the probe set every this many steps (0: never).")]
ProbeCount = Annotated[int, typer.Option(help="Probe questions.")]
KnowledgeProbe = Annotated[
    Path | None, typer.Option(help="QA JSONL answerable only from the CPT text: scored before and after.")
]
Wandb = Annotated[bool, typer.Option(help="Also log to Weights & Biases (WANDB_MODE=offline works).")]
Seed = Annotated[int, typer.Option(help="Seed of shuffling, splits, context order and LoRA init.")]
SaveSteps = Annotated[int | None, typer.Option(help="Checkpoint every this many steps (for --resume).")]
Resume = Annotated[bool, typer.Option(help="Continue from the newest checkpoint of an interrupted run.")]
InitAdapter = Annotated[
    Path | None,
    typer.Option(help="Continue training this adapter (its shape replaces --r/--alpha/--target-modules)."),
]
TokenizeWorkers = Annotated[
    int | None, typer.Option(help="Processes that tokenize the examples (default: this one).")
]
Overwrite = Annotated[bool, typer.Option(help="Replace the output if it exists.")]
PromptFormatOption = Annotated[
    PromptFormat,
    typer.Option(
        help="Prompt format, recorded in the adapter and used when it is served: alpaca-ja (指示/入力/応答), "
        "chat-template (the base model's own), rwkv (+qa/+gen prefixes), record-line (one record per line)."
    ),
]
Negatives = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Share of the questions also trained, without their gold article, to abstain (0: none).",
    ),
]


# The shared options that are `TrainingConfig` fields of the same name.
_TRAINER_KNOBS: dict[str, Any] = {
    "learning_rate": LearningRate,
    "epochs": Epochs,
    "max_steps": MaxSteps,
    "batch_size": BatchSize,
    "grad_accumulation": GradAccumulation,
    "max_length": MaxLength,
    "packing": Packing,
    "gradient_checkpointing": Checkpointing,
    "load_in_4bit": LoadIn4bit,
    "neftune_noise_alpha": Neftune,
    "eval_fraction": EvalFraction,
    "eval_steps": EvalSteps,
    "probe_every": ProbeEvery,
    "probe_count": ProbeCount,
    "knowledge_probe": KnowledgeProbe,
    "wandb": Wandb,
    "seed": Seed,
    "save_steps": SaveSteps,
    "resume": Resume,
    "init_adapter": InitAdapter,
    "tokenize_workers": TokenizeWorkers,
}


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


def with_training_options(defaults: dict[str, Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Gives a training command the shared options, with `defaults` (its config's) as their defaults; the
    command receives them as its keyword `training`."""
    lora: LoraSpec = defaults["lora"]
    options = {
        "r": (Rank, lora.r),
        "alpha": (Alpha, lora.alpha),
        "dropout": (Dropout, lora.dropout),
        "target_modules": (Targets, ",".join(lora.target_modules)),
        **{name: (annotation, defaults[name]) for name, annotation in _TRAINER_KNOBS.items()},
        "overwrite": (Overwrite, False),
    }
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in options.items()
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "training"]

        @functools.wraps(command)
        def run(**given: Any) -> None:
            training = TrainingOptions({name: given.pop(name) for name in options})
            command(**given, training=training)

        # typer reads the options from the signature and the annotations.
        run.__signature__ = inspect.Signature([*own, *shared], return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in [*own, *shared]} | {"return": None}
        return run

    return decorate


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
@with_training_options(SFT)
def sft(
    base: Base,
    out: Out,
    data: Annotated[
        Path | None,
        typer.Option(
            help="QA JSONL {qid, question, answers, gold_passage_ids} (needs --index) or instruction JSONL "
            "{instruction, input, output}."
        ),
    ] = None,
    mix: Annotated[
        list[Path] | None,
        typer.Option(help="Another QA or instruction JSONL to train on together with --data (repeatable)."),
    ] = None,
    index: Annotated[
        Path | None, typer.Option(help="Index with the gold passages; gives the distractors.")
    ] = None,
    examples: Annotated[
        list[Path] | None,
        typer.Option(
            help="Examples built by `kotae train examples` (instead of --data/--index; repeatable: trained "
            "together)."
        ),
    ] = None,
    contexts: Annotated[int, typer.Option(help="Passages per prompt: gold + distractors.")] = SFT["contexts"],
    prompt_format: PromptFormatOption = SFT["prompt_format"],
    negatives: Negatives = SFT["negatives"],
    *,
    training: TrainingOptions,
) -> None:
    """LoRA SFT in the adapter's prompt format: QA (gold passage + retrieved distractors → answer) and
    instruction records (instruction + input → output)."""
    from kotae.adapters.sft import train_sft

    config = SFTRunConfig(
        base=resolve_base(base),
        out=out,
        data=data,
        mix=tuple(mix or ()),
        index=index,
        examples=tuple(examples or ()),
        contexts=contexts,
        prompt_format=prompt_format,
        context_token_budget=get_settings().context_token_budget,
        negatives=negatives,
        **training.config_fields(),
    )
    train_sft(config, console, training.overwrite)


@train_app.command("cpt")
@with_training_options(CPT)
def cpt(
    base: Base,
    out: Out,
    text: Annotated[Path, typer.Option(help="Passage JSONL {id, title, text}.")],
    train_embeddings: Annotated[
        bool,
        typer.Option(help="Train the input and output embeddings in full too (then `kotae merge` it)."),
    ] = False,
    *,
    training: TrainingOptions,
) -> None:
    """Continued pre-training: next-token loss on raw passages, to put their knowledge into the weights
    (then `kotae merge`, then `kotae train sft` on the merged model)."""
    from kotae.adapters.cpt import train_cpt

    config = CPTRunConfig(
        base=resolve_base(base),
        out=out,
        text=text,
        train_embeddings=train_embeddings,
        **training.config_fields(),
    )
    train_cpt(config, console, training.overwrite)


@train_app.command("examples")
def examples(
    base: Base,
    data: Annotated[Path, typer.Option(help="QA JSONL {qid, question, answers, gold_passage_ids}.")],
    index: Annotated[Path, typer.Option(help="Index with the gold passages; gives the distractors.")],
    out: Annotated[Path, typer.Option(help="Examples JSONL to write (.gz to compress).")],
    contexts: Annotated[int, typer.Option(help="Passages per prompt: gold + distractors.")] = SFT["contexts"],
    prompt_format: PromptFormatOption = SFT["prompt_format"],
    negatives: Negatives = SFT["negatives"],
    seed: Seed = SFT["seed"],
) -> None:
    """Build SFT examples (prompt + completion) without training: retrieval here, training elsewhere."""
    from kotae.adapters.sft import build_sft_examples, load_prompter
    from kotae.adapters.sft_examples import write_examples

    budget = get_settings().context_token_budget
    prompter = load_prompter(resolve_base(base), prompt_format)
    built = build_sft_examples(prompter, data, index, contexts, budget, seed, console, negatives)
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


PairLength = Annotated[int, typer.Option(help="Longest tokenized (question, passage) pair.")]
PairBatch = Annotated[int, typer.Option(help="Pairs per optimizer step.")]
HeadSeed = Annotated[int, typer.Option(help="Seed of the new head and of the pairs' order.")]


@train_app.command("reranker")
def reranker(
    data: Annotated[
        list[Path],
        typer.Option(help="QA JSONL {qid, question, answers, gold_passage_ids} to train on (repeatable)."),
    ],
    index: Annotated[
        Path, typer.Option(help="Index with the gold passages (built with the configured embedder).")
    ],
    out: Annotated[Path, typer.Option(help="Reranker folder to write (atomically, when training ends).")],
    base: Annotated[
        str | None,
        typer.Option(
            help="Model to start from: a sentence-transformers or BERT-like folder, or a model store name "
            "(default: the configured embedder)."
        ),
    ] = None,
    negatives: Annotated[
        int,
        typer.Option(
            min=0, help="Hard negatives per question: top hybrid hits that are no gold and hold no answer."
        ),
    ] = RERANKER["negatives"],
    max_length: PairLength = RERANKER["max_length"],
    learning_rate: LearningRate = RERANKER["learning_rate"],
    epochs: Epochs = RERANKER["epochs"],
    max_steps: MaxSteps = RERANKER["max_steps"],
    batch_size: PairBatch = RERANKER["batch_size"],
    seed: HeadSeed = RERANKER["seed"],
    overwrite: Overwrite = False,
) -> None:
    """A cross-encoder that re-orders hybrid retrieval's candidates (`KOTAE_RERANKER`): trained with binary
    cross-entropy on each question's gold passage against its hard negatives."""
    # The options that are config fields with a default, as given (warmup is not an option).
    given = {name: value for name, value in locals().items() if name in RERANKER}
    from kotae.adapters.reranker import train_reranker
    from kotae.models.store import ModelStore

    settings = get_settings()
    config = RerankerRunConfig(
        base=ModelStore(settings.home).embedder(base or settings.embedder),
        out=out,
        data=tuple(data),
        index=index,
        **given,
    )
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
