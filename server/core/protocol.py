"""The error body every route answers with, and the request fields several routes share."""

from typing import Annotated

from pydantic import BaseModel, Field

SamplingSeed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""A 64-bit integer: vLLM seeds a torch generator with it, and a larger one fails inside the engine."""


class ErrorDetail(BaseModel):
    message: str
    """What was wrong, for people."""
    type: str
    """OpenAI's error class (`invalid_request_error`, `authentication_error`, ...)."""
    code: str
    """Stable, machine-readable reason (`invalid_json`, `model_not_found`, `not_ready`, ...)."""


class ErrorResponse(BaseModel):
    error: ErrorDetail
