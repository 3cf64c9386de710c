"""Admin API for adapters: load (or reload), unload, list. Behind `Authorization: Bearer`."""

from pydantic import BaseModel, ConfigDict, Field

from kotae.adapters.catalog import ADAPTER_NAME_PATTERN, AdapterSpec


class LoadAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=ADAPTER_NAME_PATTERN)
    """Model id the adapter is served under; loading an existing name replaces its weights."""
    path: str = Field(min_length=1, max_length=1024)
    """Adapter folder, relative to the adapter directory (`KOTAE_ADAPTER_DIR`); must stay inside it."""


class AdapterInfo(BaseModel):
    name: str
    path: str
    """Folder relative to the adapter directory."""
    rank: int
    base_model: str
    loaded_at: float
    """Unix time of the load."""
    kind: str | None = None
    """`sft` or `cpt` for adapters trained by kotae."""
    prompt_version: str | None = None
    eval_metrics: dict[str, float] | None = None

    @classmethod
    def of(cls, spec: AdapterSpec) -> "AdapterInfo":
        metadata = spec.metadata
        return cls(
            name=spec.name,
            path=spec.folder,
            rank=spec.rank,
            base_model=spec.base_model,
            loaded_at=spec.loaded_at,
            kind=metadata.kind if metadata else None,
            prompt_version=metadata.prompt_version if metadata else None,
            eval_metrics=metadata.eval_metrics if metadata else None,
        )


class AdapterList(BaseModel):
    data: list[AdapterInfo]
    default_adapter: str | None
    """The adapter that answers requests naming none (null: the base model)."""


class UnloadedAdapter(BaseModel):
    name: str
    unloaded: bool = True
