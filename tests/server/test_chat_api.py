"""OpenAI compatibility, checked with the official `openai` client: models, chat, streaming, usage."""

from collections.abc import Iterator

import openai
import pytest

QUESTION = "日本で最も高い山は何ですか？"


@pytest.fixture
def oai(live) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=120) as client:
        yield client


def ask(question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "system", "content": "簡潔に答えてください。"}, {"role": "user", "content": question}]


def test_models_list_base_and_adapters_with_parent(oai):
    models = {model.id: model for model in oai.models.list()}
    assert "tiny-gemma" in models
    assert models["tiny-gemma"].model_extra.get("parent") is None
    for name in ("default", "b"):
        assert models[name].model_extra["parent"] == "tiny-gemma"
    assert oai.models.retrieve("b").id == "b"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


def test_chat_completion_with_sources(oai):
    completion = oai.chat.completions.create(model="b", messages=ask(), max_tokens=8)
    assert completion.object == "chat.completion"
    assert completion.model == "b"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens <= 8
    sources = completion.model_extra["kotae_sources"]
    assert sources and "demo-001" in {source["id"] for source in sources}


def test_the_largest_seed_is_served_and_seeds_repeat_samples(oai):
    request = {"model": "tiny-gemma", "messages": ask(), "max_tokens": 4, "temperature": 1.0}
    seeded = [oai.chat.completions.create(**request, seed=2**63 - 1) for _ in range(2)]
    assert seeded[0].choices[0].message.content == seeded[1].choices[0].message.content
    assert oai.chat.completions.create(**request).choices


def test_stop_strings_of_any_length_are_accepted(oai):
    """One stop string longer than four characters is fine: the limit of four is on the list."""
    for stop in ("これは長い停止文字列", ["。", "、", "\n", "です"]):
        completion = oai.chat.completions.create(model="tiny-gemma", messages=ask(), max_tokens=4, stop=stop)
        assert completion.choices[0].finish_reason in ("stop", "length")


def test_stream_matches_the_non_streamed_answer_and_reports_usage(oai):
    request = {"model": "tiny-gemma", "messages": ask(), "max_tokens": 12, "temperature": 0}
    whole = oai.chat.completions.create(**request)
    chunks = list(oai.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model_extra["kotae_sources"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    streamed_usage = chunks[-1].usage
    assert chunks[-1].choices == [] and streamed_usage.prompt_tokens == whole.usage.prompt_tokens
    # The same text; a looping answer costs the answer that does not stream a few tokens more: the stream
    # stops at the loop guard, the engine core's loop stop a few copies later (`kotae.rag.loop_guard`).
    assert 0 < streamed_usage.completion_tokens <= whole.usage.completion_tokens
    assert len({chunk.id for chunk in chunks}) == 1


def test_stream_ends_with_done(live, client):
    body = {"model": "tiny-gemma", "messages": ask(), "max_tokens": 4, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"


def test_retrieval_can_be_switched_off(oai):
    completion = oai.chat.completions.create(
        model="tiny-gemma", messages=ask(), max_tokens=4, extra_body={"kotae": {"retrieval": False}}
    )
    assert completion.model_extra["kotae_sources"] is None
    with_retrieval = oai.chat.completions.create(model="tiny-gemma", messages=ask(), max_tokens=4)
    assert completion.usage.prompt_tokens < with_retrieval.usage.prompt_tokens


def test_chat_and_qa_share_the_prompt(oai, client):
    """A lone user message gets exactly /v1/qa's prompt and answer; a system message adds to the prompt."""
    request = {"model": "tiny-gemma", "max_tokens": 12, "extra_body": {"kotae": {"top_k": 3}}}
    chat = oai.chat.completions.create(messages=ask()[1:], **request)
    qa = client.post(
        "/v1/qa", json={"question": QUESTION, "adapter": "", "top_k": 3, "max_tokens": 12}
    ).json()
    assert chat.usage.prompt_tokens == qa["usage"]["prompt_tokens"]
    assert chat.choices[0].message.content == qa["answer"]
    with_system = oai.chat.completions.create(messages=ask(), **request)
    assert with_system.usage.prompt_tokens > chat.usage.prompt_tokens


def test_unknown_openai_fields_are_ignored(oai):
    completion = oai.chat.completions.create(
        model="tiny-gemma",
        messages=ask(),
        max_completion_tokens=4,
        frequency_penalty=0.5,
        logit_bias={},
        user="someone",
        response_format={"type": "text"},
        extra_body={"some_future_field": 1},
    )
    assert completion.usage.completion_tokens <= 4


def test_unknown_model_is_404(oai):
    with pytest.raises(openai.NotFoundError) as raised:
        oai.chat.completions.create(model="gpt-4o", messages=ask(), max_tokens=4)
    assert raised.value.body["code"] == "model_not_found"


def test_a_follow_up_is_retrieved_and_answered_with_the_conversation(oai, client):
    """The follow-up names nothing: retrieval searches it with the earlier turn's words (and finds
    富士山 by BM25 even with the tiny random embedder), and the earlier turn takes prompt tokens."""
    follow_up = "その標高は何メートルですか？"
    history = [
        {"role": "system", "content": "簡潔に答えてください。"},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "富士山"},
        {"role": "user", "content": follow_up},
    ]
    request = {
        "model": "tiny-gemma",
        "max_tokens": 12,
        "temperature": 0,
        "extra_body": {"kotae": {"top_k": 1}},
    }
    chat = oai.chat.completions.create(messages=history, **request)
    assert chat.model_extra["kotae_query"] == f"日本 山 富士山 {follow_up}"
    assert [source["id"] for source in chat.model_extra["kotae_sources"]] == ["demo-001"]
    alone = oai.chat.completions.create(messages=[{"role": "user", "content": follow_up}], **request)
    assert alone.model_extra["kotae_query"] == follow_up
    assert chat.usage.prompt_tokens > alone.usage.prompt_tokens
    answer = chat.choices[0].message.content
    assert answer == answer.strip() and "\n\n" not in answer
    streamed = oai.chat.completions.create(messages=history, stream=True, **request)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == answer


def test_chat_bad_histories_are_refused_with_a_reason(client):
    no_user = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "system", "content": "簡潔に。"}]}
    )
    assert no_user.status_code == 422 and no_user.json()["error"]["code"] == "no_user_message"
    # Past the 512 tokens of the passages' budget, within the server's body limit.
    long_turns = [{"role": role, "content": "history " * 400} for role in ("user", "assistant")]
    too_long = client.post(
        "/v1/chat/completions", json={"messages": [*long_turns, {"role": "user", "content": "その標高は？"}]}
    )
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "history_too_long"
