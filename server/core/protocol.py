"""The error body every route answers with."""

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    """What was wrong, for people."""
    type: str
    """OpenAI's error class (`invalid_request_error`, `authentication_error`, ...)."""
    code: str
    """Stable, machine-readable reason (`invalid_json`, `model_not_found`, `not_ready`, ...)."""


class ErrorResponse(BaseModel):
    error: ErrorDetail
