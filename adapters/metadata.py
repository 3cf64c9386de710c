"""What kotae records beside every adapter (`kotae_adapter.json`), and how the server reads it back.

An adapter folder is a standard PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`) that
vLLM loads as it is; this file says what it was trained on, so that the server can refuse an adapter
made for another base model or another prompt template before it answers badly.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from kotae.adapters.config import LoraSpec
from kotae.core.errors import InputError
from kotae.models.quantized import read_quantize_record
from kotae.models.store import model_hash
from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, PromptFormat

METADATA_FILE = "kotae_adapter.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
CONFIG_FILE, WEIGHTS_FILE = PEFT_FILES


class ModelRef(BaseModel):
    """A model folder, identified by content rather than by path."""

    name: str
    """Folder (or model store) name, for people."""
    path: str
    """Where it was when the adapter was trained."""
    hash: str
    """`kotae.models.store.model_hash` of the folder: the server compares it with the model it serves."""
    quantized_from: str | None = None
    """For a `kotae quantize` output, the hash of the model it was made from: an adapter trained on those
    rounded weights fits them alone, and the server says so when asked to serve it on another build."""


class DataRef(BaseModel):
    """A training data file as it was read."""

    path: str
    sha256: str
    rows: int
    """Non-blank lines read."""


class ContextsRef(BaseModel):
    """How SFT prompts got their passages (absent for CPT)."""

    index: str
    """Index folder that held the gold passages and gave the distractors."""
    source: DataRef
    """The QA file the prompts were built from."""
    contexts: int
    """Passages per prompt (gold + distractors)."""
    context_token_budget: int
    retrieval: str
    """Retrieval mode that found the distractors."""
    dropped: int
    """Questions left out: the answer did not fit in the context budget, or straddles two chunks."""


class AdapterRef(BaseModel):
    """An adapter a run started from, identified by its weights."""

    path: str
    sha256: str
    """Of its `adapter_model.safetensors`."""


class WeightedAdapterRef(AdapterRef):
    """An adapter whose update went into a weighted average, with its weight (the weights sum to 1)."""

    weight: float


class AdapterMetadata(BaseModel):
    """`kotae_adapter.json`."""

    format: Literal[1] = 1
    kind: Literal["sft", "cpt"]
    base_model: ModelRef
    prompt_version: str
    """`kotae.rag.prompt.PROMPT_VERSION` of the template the adapter was trained on."""
    prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT
    """The format of its prompts (`kotae.rag.prompt`); serving writes its prompts in it."""
    data: DataRef
    mixed: list[DataRef] = []
    """Further data files trained together with `data` (`--mix`)."""
    contexts: ContextsRef | None = None
    lora: LoraSpec
    continued_from: AdapterRef | None = None
    """The adapter whose weights this run started from (`init_adapter`), if any."""
    shrunk_from: AdapterRef | None = None
    """The higher-rank adapter this one is the truncated SVD of (`kotae train shrink`), if any."""
    averaged_from: list[WeightedAdapterRef] | None = None
    """The adapters whose updates this one averages (`kotae train average`), if any; the other fields are
    the first one's."""
    hyperparameters: dict[str, Any]
    eval_metrics: dict[str, float]
    """Final held-out loss, token accuracy, probe scores, knowledge retention."""
    servable: bool
    """False when layers were trained in full (embeddings): vLLM cannot load those as LoRA, so the
    adapter must go through `kotae merge` first."""
    kotae_version: str
    started_at: datetime
    finished_at: datetime


def write_metadata(folder: Path, metadata: AdapterMetadata) -> None:
    (folder / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n", encoding="utf-8")


def read_metadata(folder: Path) -> AdapterMetadata:
    """The metadata of an adapter folder; `InputError` naming the file when the folder is not a complete
    kotae adapter."""
    for name in PEFT_FILES:
        if not (folder / name).is_file():
            raise InputError(folder / name, None, "missing: not a PEFT adapter folder")
    path = folder / METADATA_FILE
    if not path.is_file():
        raise InputError(path, None, "missing: not an adapter trained by kotae")
    try:
        return AdapterMetadata.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InputError(path, None, f"invalid adapter metadata ({problems})") from None


def read_peft_config(folder: Path) -> dict[str, Any]:
    """The folder's `adapter_config.json`; `InputError` naming the file (and line) when it is not a PEFT
    LoRA config."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, None, "missing") from None
    except json.JSONDecodeError as error:
        raise InputError(path, error.lineno, f"not valid JSON ({error.msg})") from None
    except (OSError, UnicodeDecodeError):
        raise InputError(path, None, "not readable UTF-8 text") from None
    if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
        raise InputError(path, None, "not a PEFT LoRA config")
    return config


def model_ref(path: Path) -> ModelRef:
    record = read_quantize_record(path)
    return ModelRef(
        name=path.name,
        path=str(path.resolve()),
        hash=model_hash(path),
        quantized_from=record.model_hash if record is not None else None,
    )
