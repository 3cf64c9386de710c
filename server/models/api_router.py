from http import HTTPStatus

from fastapi import APIRouter

from kotae.server.core.deps import ServiceDep
from kotae.server.core.errors import error_responses
from kotae.server.models.protocol import ModelCard, ModelList
from kotae.server.models.serving import find_model, list_models

router = APIRouter(tags=["models"])


@router.get("/v1/models", responses=error_responses(HTTPStatus.SERVICE_UNAVAILABLE))
async def models(service: ServiceDep) -> ModelList:
    """The base model (with the engine that generates) and the loaded adapters (each with `parent` = the
    base model)."""
    return list_models(service)


@router.get(
    "/v1/models/{model_id}",
    responses=error_responses(
        HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
    ),
)
async def model(model_id: str, service: ServiceDep) -> ModelCard:
    return find_model(service, model_id)
