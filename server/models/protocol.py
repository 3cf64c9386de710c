"""`GET /v1/models` in OpenAI's list format: the base model and every loaded adapter."""

from typing import Literal

from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    """What chat requests put in `model`."""
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "kotae"
    parent: str | None = None
    """For an adapter: the base model's id."""
    root: str
    """The base model's id (vLLM's convention)."""
    kotae_engine: str | None = None
    """For the base model: what generates (`vllm`, `vllm-replicas` or `transformers`)."""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
