"""One adapter training run — TRL's `SFTTrainer` with a PEFT LoRA config — shared by SFT and CPT.

TRL does the tokenizing, the completion-only loss of prompt/completion rows, packing, NEFTune and the
training loop; this module maps kotae's config onto it, measures what the run changed (held-out loss,
probes, knowledge probe), and saves the adapter folder atomically with its metadata and report.

Precision: where the hardware computes in bf16 (a GPU that supports it, a CPU with AVX-512 BF16 or AMX),
the frozen base loads in bf16 and the forward runs under bf16 autocast, while the LoRA weights stay fp32
(PEFT upcasts them): a 7B base then fits in half the memory. A run that trains modules in full (CPT's
embeddings) loads the base in fp32, since those modules need fp32 master weights. Elsewhere all is fp32.
A 4-bit base from `kotae quantize` loads decompressed: an adapter continued on it learns against the rounded
weights it will be served on. With `load_in_4bit` (QLoRA), bitsandbytes quantizes a 16-bit base to NF4 as it
loads.

LoRA goes on every linear layer of the model's blocks unless `lora.target_modules` names them: the names
are read from the model (`q_proj`… for Llama and Gemma, `query_key_value`/`dense*` for GPT-NeoX,
`key`/`value`/`receptance`/`output` for RWKV) and recorded in the adapter.
"""

import random
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rich.console import Console

import kotae
from kotae.adapters.atomic import atomic_dir, check_target
from kotae.adapters.config import LoraSpec, TrainingConfig
from kotae.adapters.forgetting import KnowledgeProbe
from kotae.adapters.merge import read_lineage
from kotae.adapters.metadata import (
    AdapterMetadata,
    AdapterRef,
    ContextsRef,
    DataRef,
    model_ref,
    read_metadata,
    write_metadata,
)
from kotae.adapters.probe_callback import Probe, ProbeCallback
from kotae.adapters.report import KnowledgeReport, LossPoint, RunReport, write_report
from kotae.adapters.reporting import Reporters, choose_reporters
from kotae.core.durable import file_sha256
from kotae.core.errors import KotaeError
from kotae.models.quantized import read_quantize_record
from kotae.models.store import model_hash
from kotae.models.weights import weights_format
from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, PROMPT_VERSION, Prompter, PromptFormat

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerBase
    from trl import SFTConfig

Row = TypeVar("Row")

RECORDED_EVAL_METRICS = ("eval_loss", "eval_mean_token_accuracy")
"""Held-out figures copied into the metadata (the report keeps all of them)."""


@dataclass
class RunData:
    """What a run trains on, prepared by `sft` or `cpt`."""

    kind: Literal["sft", "cpt"]
    train: list[dict[str, str]]
    """TRL rows: `{prompt, completion}` (loss on the completion only) or `{text}` (loss on everything)."""
    eval: list[dict[str, str]]
    data: DataRef
    mixed: list[DataRef] = field(default_factory=list)
    """Further data files trained together with `data`."""
    probes: list[Probe] = field(default_factory=list)
    contexts: ContextsRef | None = None
    prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT


def held_out_split(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """(train, eval): a seeded random `fraction` of the rows held out."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = round(len(rows) * fraction)
    return [rows[i] for i in sorted(order[held:])], [rows[i] for i in sorted(order[:held])]


def work_dir(out: Path) -> Path:
    """Checkpoints and logs while training, beside the adapter folder; removed once it is saved."""
    return out.parent / f".{out.name}.work"


def train_adapter(
    config: TrainingConfig, run: RunData, console: Console, overwrite: bool = False
) -> AdapterMetadata:
    check_target(config.out, overwrite)
    if not run.train:
        raise KotaeError("nothing to train on: the training split is empty")
    continued_from = None
    if config.init_adapter is not None:
        config, continued_from = _continue_from(config, config.init_adapter)
    _check_quantized_training(config)
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from kotae.adapters.compact_lm_head import project_only_labelled_positions

    project_only_labelled_positions()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    cuda = torch.cuda.is_available()
    bf16 = bf16_supported()
    dtype = "bfloat16" if bf16 and not config.lora.modules_to_save else "float32"
    if not config.lora.target_modules:
        config = replace(config, lora=replace(config.lora, target_modules=block_linear_layers(config.base)))
    work = work_dir(config.out)
    checkpoint = _checkpoint_to_resume(work) if config.resume else None
    reporters = choose_reporters(config.wandb, console)
    tokenizer = _training_tokenizer(config.base)
    prompter = Prompter(run.prompt_format, tokenizer)
    knowledge = KnowledgeProbe(config.knowledge_probe, prompter) if config.knowledge_probe else None
    probes = (
        ProbeCallback(run.probes, tokenizer, config.probe_every, work / "runs" / "probes", reporters, console)
        if run.probes and config.probe_every
        else None
    )
    trainer = SFTTrainer(
        model=_peft_model(config, continued_from, dtype) if continued_from else str(config.base),
        args=_trainer_args(config, work, cuda, bf16, dtype, reporters, has_eval=bool(run.eval)),
        train_dataset=Dataset.from_list(run.train),
        eval_dataset=Dataset.from_list(run.eval) if run.eval else None,
        processing_class=tokenizer,
        peft_config=None if continued_from else _lora_config(config.lora),
        callbacks=[probes] if probes else None,
    )
    if config.lora.modules_to_save:
        trainer.optimizer = _optimizer(trainer.model, config)
    console.print(
        f"[bold]{run.kind}[/] {len(run.train)} train / {len(run.eval)} eval examples on "
        f"{_device_name(torch)} ({'bf16 autocast' if bf16 else 'fp32'}, base in "
        f"{'4-bit NF4' if config.load_in_4bit else dtype}), LoRA on "
        f"{', '.join(config.lora.target_modules)}"
    )

    stages: dict[str, float] = {}
    if knowledge:
        # The LoRA update starts at zero, so the wrapped model still answers as the base does.
        stages[f"before_{run.kind}"] = knowledge.score(trainer.model, tokenizer)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    eval_metrics = {k: float(v) for k, v in trainer.evaluate().items()} if run.eval else {}
    if knowledge:
        stages[f"after_{run.kind}"] = knowledge.score(trainer.model, tokenizer)
    knowledge_report = (
        knowledge.report(**_earlier_stages(config.base, knowledge), **stages) if knowledge else None
    )

    report = RunReport(
        kind=run.kind,
        base_model=str(config.base),
        device=_device_name(torch),
        started_at=started,
        finished_at=datetime.now(UTC),
        minutes=(time.perf_counter() - clock) / 60,
        train_examples=len(run.train),
        eval_examples=len(run.eval),
        steps=trainer.state.global_step,
        train_loss=result.training_loss,
        losses=[LossPoint(step=e["step"], loss=e["loss"]) for e in trainer.state.log_history if "loss" in e],
        eval_metrics=eval_metrics,
        probes=probes.history if probes else [],
        knowledge=knowledge_report,
    )
    metadata = _metadata(config, run, report, continued_from)
    with atomic_dir(config.out, overwrite) as staging:
        save_adapter(trainer.model, staging, bf16)
        write_metadata(staging, metadata)
        write_report(staging, report)
        if (work / "runs").is_dir():
            shutil.copytree(work / "runs", staging / "logs")
    if work.exists():  # Trainer makes it only when it has something to write
        shutil.rmtree(work)
    console.print(f"[green]saved[/] {config.out} ({report.minutes:.1f} min, {report.steps} steps)")
    return metadata


def bf16_supported() -> bool:
    """Whether this machine computes in bf16 natively: a GPU that supports it, else a CPU with AVX-512
    BF16 or AMX (without either, bf16 on the CPU is emulated and slower than fp32)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def block_linear_layers(base: Path) -> tuple[str, ...]:
    """The names of the linear layers in `base`'s blocks (every `nn.Linear` but the output head)."""
    import torch

    model = _meta_model(base)
    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }
    if not names:
        raise KotaeError(f"{base}: the model has no linear layers for LoRA; name them with --target-modules")
    return tuple(sorted(names))


def embedding_layers(base: Path) -> tuple[str, ...]:
    """The names of `base`'s input and output embeddings (`embed_tokens`, `lm_head` for Llama)."""
    model = _meta_model(base)
    wanted = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    return tuple(sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if id(m) in wanted}))


def _meta_model(base: Path) -> Any:
    """`base`'s model built on the meta device, for its module names: no weights are loaded."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))


def save_adapter(model: Any, folder: Path, bf16: bool) -> None:
    """The PEFT folder; after bf16 training in bf16, the dtype vLLM serves it in, at half the size of the
    fp32 master weights (a continued adapter's weights load in fp32)."""
    if bf16:
        import torch

        # Training is over: nothing reads the fp32 weights again. Only the trained weights are cast: a 4-bit
        # base cannot be.
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)
    model.save_pretrained(folder)


def _training_tokenizer(base: Path) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    # `datasets` fingerprints every map() argument by pickling it in pure Python. GemmaTokenizer keeps the
    # vocabulary (262k) and merges (515k) it built its Rust tokenizer from as Python objects that nothing
    # reads after __init__ (transformers 5.17-5.19): hashing them cost ~45 s per run on CPU. Empty them.
    for leftover in ("_vocab", "_merges"):
        value = getattr(tokenizer, leftover, None)
        if isinstance(value, dict | list):
            setattr(tokenizer, leftover, type(value)())
    return tokenizer


def _trainer_args(
    config: TrainingConfig,
    work: Path,
    cuda: bool,
    bf16: bool,
    dtype: str,
    reporters: Reporters,
    has_eval: bool,
) -> "SFTConfig":
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(work),
        run_name=config.out.name,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=config.weight_decay,
        bf16=bf16,
        fp16=False,
        use_cpu=not cuda,  # without it, the Trainer refuses bf16 where no GPU is
        # A model passed in (a continued adapter) is already loaded.
        model_init_kwargs=None
        if config.init_adapter
        else base_load_options(config.base, dtype, config.load_in_4bit),
        gradient_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        packing=config.packing,
        packing_strategy="bfd_split",
        train_sampling_strategy="group_by_length"
        if config.group_by_length and not config.packing
        else "random",
        neftune_noise_alpha=config.neftune_noise_alpha,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to=reporters.trainer_report_to or "none",
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=config.dataloader_workers,
        dataset_num_proc=config.tokenize_workers,
        dataloader_pin_memory=cuda,  # pinned host memory only speeds copies to a GPU
        disable_tqdm=False,
    )


def _lora_config(spec: LoraSpec) -> "LoraConfig":
    from peft import LoraConfig

    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        modules_to_save=list(spec.modules_to_save) or None,
        # Gemma ties lm_head to embed_tokens: train them as one matrix, so the merged model stays tied.
        ensure_weight_tying=bool(spec.modules_to_save),
        task_type="CAUSAL_LM",
    )


def _continue_from(config: TrainingConfig, adapter: Path) -> tuple[TrainingConfig, AdapterRef]:
    """The config with the adapter's own shape, and what the metadata records of it; refuses an adapter
    trained on another base (its deltas would apply to other weights), but not one trained on the model a
    GPTQ base was quantized from: it reads the same activations, so training goes on against the rounded
    weights."""
    metadata = read_metadata(adapter)
    base_hash = model_hash(config.base)
    record = read_quantize_record(config.base)
    source = record.model_hash if record is not None and record.keeps_activations else None
    if metadata.base_model.hash not in {base_hash, source}:
        made_from = f", quantized by {record.method.upper()} from it" if record is not None else ""
        raise KotaeError(
            f"--init-adapter {adapter} was trained on {metadata.base_model.name} "
            f"({metadata.base_model.hash[:12]}), not on {config.base} ({base_hash[:12]}){made_from}"
        )
    reference = AdapterRef(
        path=str(adapter.resolve()), sha256=file_sha256(adapter / "adapter_model.safetensors")
    )
    return replace(config, lora=metadata.lora), reference


def base_load_options(base: Path, dtype: str, load_in_4bit: bool = False) -> dict[str, Any]:
    """`from_pretrained` options for the frozen base: `dtype`; with `load_in_4bit`, bitsandbytes NF4
    (QLoRA); for a compressed-tensors checkpoint (`kotae quantize`) its weights decompressed into plain
    linear layers, so that LoRA trains against the rounded weights vLLM serves."""
    options: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    elif weights_format(base) == "compressed-tensors":
        from transformers.utils.quantization_config import CompressedTensorsConfig

        options["quantization_config"] = CompressedTensorsConfig(run_compressed=False)
    return options


def _check_quantized_training(config: TrainingConfig) -> None:
    """QLoRA trains LoRA alone, on a 16-bit base."""
    if not config.load_in_4bit:
        return
    if config.lora.modules_to_save:
        raise KotaeError("--load-in-4bit trains LoRA only: modules trained in full need a 16-bit base")
    if weights_format(config.base) not in {"bf16", "fp16", "fp32", None}:
        raise KotaeError(f"--load-in-4bit quantizes a 16-bit base; {config.base} is quantized already")


def _peft_model(config: TrainingConfig, adapter: AdapterRef, dtype: str) -> Any:
    """The base in `dtype` (as TRL loads a fresh run's) with the adapter's weights, trainable, in fp32."""
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    base = config.base
    model = AutoModelForCausalLM.from_pretrained(base, **base_load_options(base, dtype, config.load_in_4bit))
    if config.load_in_4bit:  # as TRL prepares a fresh run's 4-bit model
        model = prepare_model_for_kbit_training(model, config.gradient_checkpointing)
    return PeftModel.from_pretrained(model, adapter.path, is_trainable=True, autocast_adapter_dtype=True)


def _optimizer(model: Any, config: TrainingConfig) -> "torch.optim.Optimizer":
    """AdamW with the fully trained modules at their own, lower learning rate (the scheduler scales both)."""
    import torch

    lora, full = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (full if "modules_to_save" in name else lora).append(parameter)
    groups = [
        {"params": lora, "lr": config.learning_rate},
        {"params": full, "lr": config.full_module_learning_rate},
    ]
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _checkpoint_to_resume(work: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(work)) if work.is_dir() else None
    if last is None:
        raise KotaeError(f"--resume: no checkpoint in {work} (checkpoints are written with --save-steps)")
    return last


def _earlier_stages(base: Path, knowledge: KnowledgeProbe) -> dict[str, float | None]:
    """CPT's figures for the same probe, when the base is a merged CPT model."""
    lineage = read_lineage(base)
    earlier: KnowledgeReport | None = lineage.knowledge if lineage else None
    if earlier is None or earlier.probe_sha256 != knowledge.sha256:
        return {}
    return {"before_cpt": earlier.before_cpt, "after_cpt": earlier.after_cpt}


def _metadata(
    config: TrainingConfig, run: RunData, report: RunReport, continued_from: AdapterRef | None
) -> AdapterMetadata:
    metrics = {k: v for k, v in report.eval_metrics.items() if k in RECORDED_EVAL_METRICS}
    if report.train_loss is not None:
        metrics["train_loss"] = report.train_loss
    if report.probes:
        metrics["probe_partial"] = report.probes[-1].partial
    if report.knowledge:
        metrics |= report.knowledge.figures()
    return AdapterMetadata(
        kind=run.kind,
        base_model=model_ref(config.base),
        prompt_version=PROMPT_VERSION,
        prompt_format=run.prompt_format,
        data=run.data,
        mixed=run.mixed,
        contexts=run.contexts,
        lora=config.lora,
        continued_from=continued_from,
        hyperparameters=config.hyperparameters(),
        eval_metrics=metrics,
        servable=not config.lora.modules_to_save,
        kotae_version=kotae.__version__,
        started_at=report.started_at,
        finished_at=report.finished_at,
    )


def _device_name(torch: Any) -> str:
    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
