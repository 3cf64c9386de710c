"""Answers `/v1/qa` through `Pipeline.answer`, the path `kotae ask` and the evals share."""

from kotae.rag.qa_reply import QAResponse, QATimings, Source, Usage
from kotae.server.core.api_keys import ReaderScope
from kotae.server.core.state import Service
from kotae.server.qa.protocol import QARequest


async def answer_question(service: Service, request: QARequest, scope: ReaderScope) -> QAResponse:
    collection = service.collection_for(request.collection, scope)
    question = service.check_question(request.question)
    sampling = service.sampling(request.max_tokens, request.temperature, seed=request.seed)
    adapter = service.adapter_for(request.adapter)
    with service.metrics.track_request(adapter):
        answer = await service.pipeline.answer(
            question, sampling, adapter, request.top_k, request.retrieval, collection
        )
    service.metrics.retrieval_seconds.observe(answer.timings.retrieve_ms / 1000)
    service.metrics.record_generation(adapter, answer.completion, answer.timings.generate_ms / 1000)
    return QAResponse(
        answer=answer.text,
        answerable=answer.answerable,
        sources=Source.list_of(answer.sources, request.include_text, answer.last_cut),
        collection=collection,
        model=service.base_model,
        adapter=adapter,
        finish_reason=answer.completion.finish_reason,
        usage=Usage.of(answer.completion),
        timings=QATimings(retrieve_ms=answer.timings.retrieve_ms, generate_ms=answer.timings.generate_ms),
    )
