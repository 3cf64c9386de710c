"""LoRA adapters the engine may serve: validated before they reach it.

A load names a folder inside the adapter root (`Settings.adapter_dir`). Before vLLM sees it, kotae checks
that the path stays inside the root after resolving symlinks, that `adapter_config.json` is a readable
PEFT LoRA config with its weights beside it, that the adapter was made for the base model being served,
and that its rank fits the engine. A refused load leaves the engine as it was.

Messages name adapter folders relative to the root: clients never see the server's file system. The
server answers a refusal with the HTTP status of its code (`kotae.server.core.errors`).
"""

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kotae.adapters.metadata import (
    CONFIG_FILE,
    METADATA_FILE,
    AdapterMetadata,
    read_metadata,
    read_peft_config,
)
from kotae.core.errors import InputError, KotaeError
from kotae.rag.engine_protocol import Engine
from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, PROMPT_VERSION, PromptFormat

logger = logging.getLogger(__name__)

ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Adapter names: they become metric labels and model ids, so no spaces, slashes or unbounded length."""
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterRejected(KotaeError):
    """A refused adapter: a message for the client and a stable machine-readable code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class ServedBase:
    """What an adapter's base must match: the served model's name and, when known, its content hash."""

    name: str
    hash: str | None
    quantized_from: str | None = None
    """The hash of the model `kotae quantize` made the served one from with GPTQ: adapters trained on
    that model apply unchanged (LoRA runs in 16 bits on top of rounded weights)."""
    rescaled_from: tuple[str, str] | None = None
    """(hash, method) of the model a quantization that rescales activations (AWQ) made the served one
    from: adapters trained on that model are refused with the reason (`kotae.models.quantized`)."""

    def check_adapter(self, config: dict[str, Any], metadata: AdapterMetadata | None, shown: str) -> str:
        """The adapter's base model name, if it may serve on this model. The base model's content hash
        decides when both sides know it (the served model's own or its quantization source's; an adapter
        tuned on another quantization of that source is refused with the reason); else the base model's
        folder name in the PEFT config must be the served model's."""
        if metadata is not None and self.hash is not None:
            trained_on = metadata.base_model
            if self.rescaled_from and trained_on.hash == self.rescaled_from[0]:
                raise AdapterRejected(
                    f"adapter {shown!r} was trained on {trained_on.name!r}, which the served "
                    f"{self.name!r} was made from by {self.rescaled_from[1].upper()}: it rescales the "
                    f"activations the adapter reads. Serve a GPTQ model, or train the adapter on this one.",
                    "adapter_base_mismatch",
                )
            accepted = {self.hash, self.quantized_from} - {None}
            if trained_on.hash in accepted:
                return trained_on.name
            if trained_on.quantized_from in accepted:
                raise AdapterRejected(
                    f"adapter {shown!r} was tuned on {trained_on.name!r}, another build of this model by "
                    "`kotae quantize`: an adapter tuned on rounded weights fits those weights alone. Serve "
                    f"it on {trained_on.name!r}, or serve here an adapter trained on the source model.",
                    "adapter_base_mismatch",
                )
            raise AdapterRejected(
                f"adapter {shown!r} was trained on base model {trained_on.name!r} "
                f"(another build than the served {self.name!r})",
                "adapter_base_mismatch",
            )
        declared = config.get("base_model_name_or_path")
        if not isinstance(declared, str) or not declared.strip():
            raise AdapterRejected(
                f"{shown}/{CONFIG_FILE} does not name its base model", "adapter_base_mismatch"
            )
        base_name = Path(declared.rstrip("/")).name
        if base_name != self.name:
            raise AdapterRejected(
                f"adapter {shown!r} was trained on base model {base_name!r}, the server serves {self.name!r}",
                "adapter_base_mismatch",
            )
        return base_name


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """A validated adapter folder."""

    name: str
    path: Path
    """Resolved, inside the adapter root."""
    folder: str
    """`path` relative to the root: what clients see."""
    rank: int
    base_model: str
    metadata: AdapterMetadata | None
    """`kotae_adapter.json`, for adapters trained by kotae."""
    loaded_at: float = field(default_factory=time.time)


class AdapterCatalog:
    """Adapters loaded in the engine, with what their validation found. The engine's own table is the
    truth for what is served; this keeps the matching metadata."""

    def __init__(self, root: Path, engine: Engine, base: ServedBase) -> None:
        self.root = root.resolve()
        self.engine = engine
        self.base = base
        self._specs: dict[str, AdapterSpec] = {}
        # Keeps the engine's table and `_specs` in step when loads and unloads of one name race.
        self._lock = asyncio.Lock()

    # -- queries --------------------------------------------------------------------------------

    def loaded(self) -> list[AdapterSpec]:
        served = self.engine.adapters
        return [spec for name, spec in sorted(self._specs.items()) if name in served]

    def is_loaded(self, name: str) -> bool:
        return name in self.engine.adapters

    def prompt_format(self, name: str | None) -> PromptFormat:
        """The format `name` was trained in; the default for the base model (None) and for adapters
        without kotae's metadata."""
        spec = self._specs.get(name) if name is not None else None
        return spec.metadata.prompt_format if spec and spec.metadata else DEFAULT_PROMPT_FORMAT

    # -- changes --------------------------------------------------------------------------------

    async def load(self, name: str, folder: str) -> AdapterSpec:
        """Validate, then load (or replace) `name`; when this returns, new requests get these weights."""
        spec = await asyncio.to_thread(self.inspect, name, folder)
        async with self._lock:
            try:
                await self.engine.load_adapter(name, spec.path)
            except Exception as error:
                # vLLM's message may name server paths: log it, answer with the kind of failure only.
                logger.warning("engine refused adapter %r from %s: %s", name, spec.path, error)
                raise AdapterRejected(
                    f"the engine could not load adapter folder {spec.folder!r} ({type(error).__name__})",
                    "adapter_load_failed",
                ) from None
            self._specs[name] = spec
        logger.info("adapter %r loaded from %s (rank %d)", name, spec.folder, spec.rank)
        return spec

    async def unload(self, name: str) -> None:
        async with self._lock:
            await self.engine.unload_adapter(name)
            self._specs.pop(name, None)
        logger.info("adapter %r unloaded", name)

    async def load_root(self) -> None:
        """Load every adapter folder directly under the root (named after its folder). A folder that
        fails validation is logged and skipped: one bad adapter must not keep the service down."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if not (folder / CONFIG_FILE).is_file():
                continue
            if not re.fullmatch(ADAPTER_NAME_PATTERN, folder.name):
                logger.warning("adapter folder %s skipped: its name is not a valid adapter name", folder)
                continue
            try:
                await self.load(folder.name, folder.name)
            except AdapterRejected as error:
                logger.warning("adapter folder %s skipped: %s", folder, error.message)

    # -- validation -----------------------------------------------------------------------------

    def inspect(self, name: str, folder: str) -> AdapterSpec:
        """Every check that can be made without the engine; `AdapterRejected` says which failed."""
        path = self.resolve(folder)
        shown = path.relative_to(self.root).as_posix() or "."
        self._check_contents(path)
        config = self._read_config(path, shown)
        if not any((path / weights).is_file() for weights in WEIGHT_FILES):
            raise AdapterRejected(f"adapter folder {shown!r} has no adapter weights", "adapter_invalid")
        rank = self._rank(config, shown)
        metadata = self._read_metadata(path, shown)
        base_model = self.base.check_adapter(config, metadata, shown)
        return AdapterSpec(name, path, shown, rank, base_model, metadata)

    def resolve(self, folder: str) -> Path:
        """The folder inside the root; `..`, absolute paths elsewhere and symlinks that lead out are
        refused (the check runs on the fully resolved path)."""
        try:
            path = (self.root / folder).resolve()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop
            raise AdapterRejected("adapter path is not a valid path", "adapter_path_invalid") from None
        if not path.is_relative_to(self.root):
            raise AdapterRejected(
                "adapter path must stay inside the adapter directory",
                "adapter_path_outside_root",
            )
        if not path.is_dir():
            raise AdapterRejected(
                f"adapter folder {path.relative_to(self.root).as_posix()!r} does not exist",
                "adapter_not_found",
            )
        return path

    def _check_contents(self, path: Path) -> None:
        """The engine reads every file of the folder: a symlinked file that leads out of the root is an
        escape as much as a symlinked folder."""
        for entry in path.rglob("*"):
            try:
                target = entry.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                raise AdapterRejected(
                    "adapter folder holds an unusable symlink", "adapter_path_invalid"
                ) from None
            if not target.is_relative_to(self.root):
                raise AdapterRejected(
                    "adapter files must stay inside the adapter directory",
                    "adapter_path_outside_root",
                )

    @staticmethod
    def _read_config(path: Path, shown: str) -> dict[str, Any]:
        try:
            return read_peft_config(path)
        except InputError as error:
            where = f"{shown}/{CONFIG_FILE}" + (f":{error.line}" if error.line is not None else "")
            raise AdapterRejected(f"{where}: {error.reason}", "adapter_invalid") from None

    def _rank(self, config: dict[str, Any], shown: str) -> int:
        pattern = config.get("rank_pattern") or {}
        ranks = [config.get("r"), *(pattern.values() if isinstance(pattern, dict) else [None])]
        if not all(isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1 for rank in ranks):
            raise AdapterRejected(f"{shown}/{CONFIG_FILE} has no valid LoRA rank `r`", "adapter_invalid")
        rank = max(ranks)
        if rank > self.engine.max_lora_rank:
            raise AdapterRejected(
                f"adapter rank {rank} is above the engine's maximum LoRA rank {self.engine.max_lora_rank}",
                "adapter_rank_too_large",
            )
        return rank

    @staticmethod
    def _read_metadata(path: Path, shown: str) -> AdapterMetadata | None:
        """kotae's metadata when the adapter has it; plain PEFT adapters (trained elsewhere) have none."""
        if not (path / METADATA_FILE).exists():
            return None
        try:
            metadata = read_metadata(path)
        except InputError as error:
            raise AdapterRejected(f"{shown}: {error.reason}", "adapter_invalid") from None
        if not metadata.servable:
            raise AdapterRejected(
                f"adapter {shown!r} trains full layers and cannot be served as LoRA: merge it first",
                "adapter_not_servable",
            )
        if metadata.prompt_version != PROMPT_VERSION:
            raise AdapterRejected(
                f"adapter {shown!r} was trained on prompt template {metadata.prompt_version!r}, "
                f"the server writes {PROMPT_VERSION!r}",
                "adapter_prompt_mismatch",
            )
        return metadata
