"""Each bad input gets a 4xx with a reason, in one error shape, without stack traces or server paths."""

import pytest


def assert_error(response, status: int, code: str | None = None, live=None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert "Traceback" not in response.text and 'File "' not in response.text
    if live is not None:
        assert not any(private in response.text for private in live.private_paths)
    return error


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"question": ""}, "question_empty", "question"),
        ({"question": "  \n "}, "question_empty", "question"),
        ({"question": "あ" * 201}, "question_too_long", "200"),
        ({"question": "富士山は？", "max_tokens": 65}, "max_tokens_too_large", "64"),
        ({"question": "富士山は？", "max_tokens": 0}, "invalid_request", "max_tokens"),
        ({"question": "富士山は？", "top_k": 0}, "invalid_request", "top_k"),
        ({"question": "富士山は？", "temperature": -1}, "invalid_request", "temperature"),
        ({"question": "富士山は？", "retrieval": "grep"}, "invalid_request", "retrieval"),
        ({"question": "富士山は？", "unknown": 1}, "invalid_request", "unknown"),
        # JSON types are kept strictly, as the OpenAPI schema states them: no bool for int, no str for number.
        ({"question": "富士山は？", "max_tokens": True}, "invalid_request", "max_tokens"),
        ({"question": "富士山は？", "top_k": "5"}, "invalid_request", "top_k"),
        ({"question": "富士山は？", "temperature": "0.5"}, "invalid_request", "temperature"),
        ({"question": "富士山は？", "include_text": 1}, "invalid_request", "include_text"),
        ({"question": 3}, "invalid_request", "question"),
        ({}, "invalid_request", "question"),
    ],
)
def test_qa_rejects_bad_fields_with_422(client, live, body, code, field):
    error = assert_error(client.post("/v1/qa", json=body), 422, code, live)
    assert field in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"role": "system", "content": "only a system message"}]},
        {"messages": [{"role": "user", "content": ""}]},
        {"messages": [{"role": "user", "content": "x" * 201}]},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000},
        {"messages": [{"role": "user", "content": "x"}], "n": 2},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "user", "content": "x"}], "kotae": {"top_k": 0}},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": True},
        {"messages": [{"role": "user", "content": "x"}], "stream": "yes"},
        {"messages": [{"role": "user", "content": "x"}], "stop": [""]},
        {"messages": [{"role": "user", "content": "x"}], "seed": 2**64},
        {"messages": [{"role": "user", "content": "x"}], "stop": ""},
        {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
    ],
)
def test_chat_rejects_bad_requests_with_422(client, live, body):
    assert_error(client.post("/v1/chat/completions", json={"model": "tiny-gemma", **body}), 422, live=live)


@pytest.mark.parametrize("path", ["/v1/qa", "/v1/chat/completions"])
def test_malformed_json_is_400(client, path):
    response = client.post(path, content=b'{"question": "x",', headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_oversized_bodies_are_413_declared_or_streamed(client, live):
    big = {"question": "x", "pad": "あ" * live.settings.max_body_bytes}
    assert_error(client.post("/v1/qa", json=big), 413, "body_too_large")

    def chunks():
        for _ in range(live.settings.max_body_bytes // 1000 + 2):
            yield b" " * 1000

    # No Content-Length (chunked): the cap applies while the body is read.
    response = client.post("/v1/qa", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, "body_too_large")


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nope"), 404)
    assert_error(client.get("/v1/qa"), 405)
