from fastapi import APIRouter, Request

from kotae.rag.qa_reply import QAResponse
from kotae.server.core.cancellation import with_cancellation
from kotae.server.core.deps import ReaderScopeDep, ServiceDep
from kotae.server.core.errors import QUESTION_ERRORS
from kotae.server.qa.protocol import QARequest
from kotae.server.qa.serving import answer_question

router = APIRouter(tags=["qa"])


@router.post(
    "/v1/qa",
    responses=QUESTION_ERRORS,
)
@with_cancellation
async def qa(
    request: QARequest, service: ServiceDep, scope: ReaderScopeDep, raw_request: Request
) -> QAResponse:
    """Answer a question from a collection, with the passages the answer was written from."""
    return await answer_question(service, request, scope)
