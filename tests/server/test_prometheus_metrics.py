"""`/metrics` counts what the server did, with the labels the dashboard sums by: latency by route and
status, requests, tokens, time to first token and generation time per adapter, retrieval per question and
per shared retrieval batch."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def read_samples(client: httpx.Client) -> Samples:
    text = client.get("/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_status_and_adapter(client):
    before = read_samples(client)
    qa = client.post("/v1/qa", json={"question": "富士山の高さは？", "adapter": "b", "max_tokens": 8})
    message = {"role": "user", "content": "琵琶湖は何県？"}
    chat = client.post(
        "/v1/chat/completions", json={"model": "tiny-gemma", "messages": [message], "max_tokens": 8}
    )
    assert (qa.status_code, chat.status_code) == (200, 200), (qa.text, chat.text)
    assert client.post("/v1/qa", json={"question": ""}).status_code == 422
    after = read_samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    latency = "kotae_request_duration_seconds_count"
    assert delta(latency, route="/v1/qa", method="POST", status="200") == 1
    assert delta(latency, route="/v1/qa", method="POST", status="422") == 1
    assert delta(latency, route="/v1/chat/completions", method="POST", status="200") == 1
    assert delta("kotae_retrieval_duration_seconds_count") == 2
    # The two requests came one after the other: two batches of one, each timed stage by stage.
    assert delta("kotae_retrieval_batch_size_count") == 2
    assert delta("kotae_retrieval_batch_size_sum") == 2
    assert delta("kotae_retrieval_queue_seconds_count") == 2
    for stage in ("embed", "dense", "tokenize", "bm25", "fuse", "read", "prompt"):
        assert delta("kotae_retrieval_stage_seconds_count", stage=stage) == 2, stage
    usage = {"b": qa.json()["usage"], "base": chat.json()["usage"]}
    for adapter, tokens in usage.items():
        assert delta("kotae_adapter_requests_total", adapter=adapter, outcome="ok") == 1
        assert delta("kotae_adapter_request_duration_seconds_count", adapter=adapter) == 1
        assert delta("kotae_generation_duration_seconds_count", adapter=adapter) == 1
        assert delta("kotae_time_to_first_token_seconds_count", adapter=adapter) == 1
        assert delta("kotae_prompt_tokens_total", adapter=adapter) == tokens["prompt_tokens"] > 0
        assert delta("kotae_completion_tokens_total", adapter=adapter) == tokens["completion_tokens"] > 0
    # The request that rendered `after` was the one in flight.
    assert value(after, "kotae_requests_in_flight") == 1
