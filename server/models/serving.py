from http import HTTPStatus

from kotae.server.core.errors import APIError
from kotae.server.core.state import Service
from kotae.server.models.protocol import ModelCard, ModelList


def list_models(service: Service) -> ModelList:
    """Read from the engine's adapter table: an adapter shows here as soon as its load returned."""
    base = service.base_model
    engine = service.pipeline.engine
    cards = [ModelCard(id=base, created=int(service.ready_at), root=base, kotae_engine=engine.kind)]
    for loaded in sorted(engine.adapters.values(), key=lambda a: a.name):
        cards.append(ModelCard(id=loaded.name, created=int(loaded.loaded_at), parent=base, root=base))
    return ModelList(data=cards)


def find_model(service: Service, model_id: str) -> ModelCard:
    for card in list_models(service).data:
        if card.id == model_id:
            return card
    raise APIError(HTTPStatus.NOT_FOUND, f"model {model_id!r} does not exist", "model_not_found")
