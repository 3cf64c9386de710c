from http import HTTPStatus

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from kotae.server.chat.protocol import ChatCompletion, ChatCompletionRequest
from kotae.server.chat.serving import complete_chat, prepare_turn, start_stream
from kotae.server.core.cancellation import with_cancellation
from kotae.server.core.deps import ReaderScopeDep, ServiceDep
from kotae.server.core.errors import QUESTION_ERRORS

router = APIRouter(tags=["chat"])


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={
        HTTPStatus.OK.value: {"content": {"text/event-stream": {}}},
        **QUESTION_ERRORS,
    },
)
@with_cancellation
async def chat_completions(
    request: ChatCompletionRequest, service: ServiceDep, scope: ReaderScopeDep, raw_request: Request
) -> ChatCompletion | StreamingResponse:
    """OpenAI-compatible chat: the answer to the last user message, from retrieved passages by default."""
    turn = await prepare_turn(service, request, scope)
    if not request.stream:
        return await complete_chat(service, turn)
    include_usage = request.stream_options is not None and request.stream_options.include_usage
    events = await start_stream(service, turn, include_usage)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
