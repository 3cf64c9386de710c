"""Every error kotae's HTTP API returns has one shape, OpenAI's: `{"error": {"message", "type", "code"}}`.

Messages say what was wrong with the request; they never carry a stack trace or a file path of the
server (unexpected exceptions are logged and answered with a generic 500).
"""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kotae.adapters.catalog import AdapterRejected
from kotae.rag.collections import UnknownCollection, UnknownDocument
from kotae.rag.engine_protocol import EngineDead, UnknownAdapter
from kotae.server.core.protocol import ErrorDetail, ErrorResponse

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    HTTPStatus.BAD_REQUEST: "invalid_request_error",
    HTTPStatus.UNAUTHORIZED: "authentication_error",
    HTTPStatus.FORBIDDEN: "permission_error",
    HTTPStatus.NOT_FOUND: "not_found_error",
    HTTPStatus.METHOD_NOT_ALLOWED: "invalid_request_error",
    HTTPStatus.CONFLICT: "invalid_request_error",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "invalid_request_error",
    HTTPStatus.UNPROCESSABLE_ENTITY: "invalid_request_error",
    HTTPStatus.SERVICE_UNAVAILABLE: "service_unavailable",
}


class APIError(Exception):
    """An error answer: status, a message for the client, and a stable machine-readable code."""

    def __init__(
        self, status: HTTPStatus, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


class NotReady(APIError):
    def __init__(self, reason: str) -> None:
        super().__init__(HTTPStatus.SERVICE_UNAVAILABLE, reason, "not_ready")


class BodyTooLarge(HTTPException):
    """A FastAPI HTTPException: raised while FastAPI reads the body, it passes through as it is (other
    exceptions there become a generic 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body is larger than {limit} bytes")


ADAPTER_REJECTION_STATUS = {
    "adapter_path_outside_root": HTTPStatus.BAD_REQUEST,
    "adapter_not_found": HTTPStatus.NOT_FOUND,
}
"""Status of a refused adapter (`AdapterRejected`) by its code; any other refusal is 422."""

HTTP_ERROR_CODES = {
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "body_too_large",
}


def error_body(status: HTTPStatus, message: str, code: str) -> dict[str, Any]:
    detail = ErrorDetail(message=message, type=ERROR_TYPES.get(status, "server_error"), code=code)
    return ErrorResponse(error=detail).model_dump()


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(
        error_body(error.status, error.message, error.code), status_code=error.status, headers=error.headers
    )


def validation_message(error: RequestValidationError) -> tuple[HTTPStatus, str, str]:
    """A one-line reason from pydantic's errors; the offending input values are left out (they may be
    huge or private)."""
    problems = error.errors()
    if any(problem["type"] == "json_invalid" for problem in problems):
        return HTTPStatus.BAD_REQUEST, "request body is not valid JSON", "invalid_json"
    reasons = [problem_reason(problem) for problem in problems]
    return HTTPStatus.UNPROCESSABLE_ENTITY, "; ".join(reasons), "invalid_request"


def problem_reason(problem: Any) -> str:
    """One of pydantic's complaints as `field.path: message`, without the input value."""
    where = ".".join(str(part) for part in problem["loc"] if part != "body")
    return f"{where}: {problem['msg']}" if where else problem["msg"]


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, APIError)
        return error_response(error)

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        status, message, code = validation_message(error)
        return JSONResponse(error_body(status, message, code), status_code=status)

    async def on_http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        status = HTTPStatus(error.status_code)
        message = error.detail if isinstance(error.detail, str) else status.phrase
        code = HTTP_ERROR_CODES.get(status, status.phrase.lower().replace(" ", "_"))
        return JSONResponse(error_body(status, message, code), status_code=status, headers=error.headers)

    async def on_engine_dead(_: Request, error: Exception) -> JSONResponse:
        return error_response(APIError(HTTPStatus.SERVICE_UNAVAILABLE, str(error), "engine_dead"))

    async def on_unknown_adapter(_: Request, error: Exception) -> JSONResponse:
        return error_response(APIError(HTTPStatus.NOT_FOUND, str(error), "model_not_found"))

    async def on_adapter_rejected(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, AdapterRejected)
        status = ADAPTER_REJECTION_STATUS.get(error.code, HTTPStatus.UNPROCESSABLE_ENTITY)
        return error_response(APIError(status, error.message, error.code))

    async def on_unknown_collection(_: Request, error: Exception) -> JSONResponse:
        return error_response(APIError(HTTPStatus.NOT_FOUND, str(error), "collection_not_found"))

    async def on_unknown_document(_: Request, error: Exception) -> JSONResponse:
        return error_response(APIError(HTTPStatus.NOT_FOUND, str(error), "document_not_found"))

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        status = HTTPStatus.INTERNAL_SERVER_ERROR
        return JSONResponse(error_body(status, "internal server error", "internal_error"), status_code=status)

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(EngineDead, on_engine_dead)
    app.add_exception_handler(UnknownAdapter, on_unknown_adapter)
    app.add_exception_handler(AdapterRejected, on_adapter_rejected)
    app.add_exception_handler(UnknownCollection, on_unknown_collection)
    app.add_exception_handler(UnknownDocument, on_unknown_document)
    app.add_exception_handler(Exception, on_unexpected)


def error_responses(*statuses: HTTPStatus) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for routes: the error statuses they can answer, all with `ErrorResponse`."""
    return {status.value: {"model": ErrorResponse, "description": status.phrase} for status in statuses}


QUESTION_ERRORS = error_responses(
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.UNAUTHORIZED,
    HTTPStatus.FORBIDDEN,
    HTTPStatus.NOT_FOUND,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    HTTPStatus.UNPROCESSABLE_ENTITY,
    HTTPStatus.SERVICE_UNAVAILABLE,
)
"""What a question route (`/v1/qa`, chat) can answer besides 200: bad or oversized input, a missing or
unauthorized key, an unknown collection or adapter, an engine not ready."""
