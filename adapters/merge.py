"""`kotae merge`: fold an adapter into its base model, giving a plain safetensors model folder.

CPT → merge → SFT merges the CPT adapter before SFT: the knowledge then sits in the base weights, SFT
trains a fresh, servable LoRA on top, and CPT's fully trained embeddings (which vLLM cannot load as
LoRA) become ordinary weights. The merged folder records where it came from (`kotae_merge.json`), so a
later SFT run can report the whole forgetting curve.
"""

import shutil
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console

from kotae.adapters.atomic import atomic_dir, check_target
from kotae.adapters.metadata import AdapterMetadata, ModelRef, model_hash, model_ref, read_metadata
from kotae.adapters.report import KnowledgeReport, read_report
from kotae.core.errors import KotaeError

MERGE_FILE = "kotae_merge.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


class MergeRecord(BaseModel):
    """`kotae_merge.json` in a merged model folder."""

    base: ModelRef
    adapter: str
    adapter_metadata: AdapterMetadata
    knowledge: KnowledgeReport | None
    """The adapter run's knowledge probe figures (CPT: before and after)."""
    merged_at: datetime


def read_lineage(model: Path) -> MergeRecord | None:
    path = model / MERGE_FILE
    return MergeRecord.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None


def merge_adapter(base: Path, adapter: Path, out: Path, console: Console, overwrite: bool = False) -> Path:
    check_target(out, overwrite)
    metadata = read_metadata(adapter)
    if metadata.base_model.hash != model_hash(base):
        raise KotaeError(
            f"{adapter} was trained on {metadata.base_model.name} ({metadata.base_model.path}), "
            f"and {base} is a different model"
        )
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    stored_dtype = AutoConfig.from_pretrained(base).dtype or torch.float32
    with console.status(f"merging {adapter.name} into {base.name}…"):
        # Add the low-rank update in fp32, then store in the base's own precision.
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload().to(stored_dtype)
        record = MergeRecord(
            base=model_ref(base),
            adapter=str(adapter.resolve()),
            adapter_metadata=metadata,
            knowledge=report.knowledge if (report := read_report(adapter)) else None,
            merged_at=datetime.now(UTC),
        )
        with atomic_dir(out, overwrite) as staging:
            merged.save_pretrained(staging)
            _copy_tokenizer_files(base, staging)
            (staging / MERGE_FILE).write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    console.print(f"[green]merged[/] {out}")
    return out


def _copy_tokenizer_files(base: Path, staging: Path) -> None:
    """Everything but weights and what `save_pretrained` wrote, byte for byte: the tokenizer must stay the
    one the adapter was trained with, or prompts would tokenize (and fit the budget) differently."""
    for path in base.iterdir():
        if not path.is_file() or path.name.endswith(WEIGHT_SUFFIXES) or (staging / path.name).exists():
            continue
        # kotae's own records (the store's source hash, an earlier merge's lineage) describe the base,
        # not the merged model; a sharded base's weight index does not fit the merged weights.
        if path.name.startswith(("kotae_", ".")) or path.name.endswith(".index.json"):
            continue
        shutil.copy2(path, staging / path.name)
