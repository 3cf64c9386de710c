"""`kotae eval --target openai:URL` against a real vLLM OpenAI server: the session's replicas
(`python -m vllm.entrypoints.openai.api_server`, tiny random Gemma). kotae retrieves from the demo index
and writes the prompts here; the endpoint answers them. Named to run before test_replicas.py, whose last
tests kill the replicas."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jsonl_files import write_jsonl
from server_fixtures import BASE_MODEL, ReplicaProcess, server_settings
from typer.testing import CliRunner

from kotae.core.config import get_settings
from kotae.evals.commands import eval_app
from kotae.evals.openai_engine import OpenAIEngine
from kotae.rag.engine_protocol import Sampling
from kotae.rag.prompt import Prompter
from kotae.rag.token_counter import TokenCounter

QUESTIONS = [
    {
        "qid": "q1",
        "question": "日本で最も高い山は何ですか？",
        "answers": ["富士山"],
        "gold_passage_ids": ["demo-001"],
    },
    {
        "qid": "q2",
        "question": "琵琶湖は何県にありますか？",
        "answers": ["滋賀県"],
        "gold_passage_ids": ["demo-002"],
    },
    {"qid": "q3", "question": "関ヶ原の戦いは何年に起きましたか？", "answers": ["1600年"]},
]


@pytest.fixture
def settings_from_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI's settings: the session server's index, generator (for its tokenizer) and budget."""
    settings = server_settings(workspace)
    for name in ("home", "generator", "embedder", "index", "context_token_budget", "max_tokens"):
        monkeypatch.setenv(f"KOTAE_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("KOTAE_ABSTAIN_MIN_COSINE", "0")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused-by-vllm")
    get_settings.cache_clear()
    yield write_jsonl(workspace / "openai-qa.jsonl", QUESTIONS)
    get_settings.cache_clear()


def test_an_openai_endpoint_is_scored_on_kotaes_retrieval_and_prompts(
    replicas: list[ReplicaProcess], settings_from_workspace: Path, tmp_path: Path
):
    replica = replicas[0]
    assert replica.process.poll() is None, "the replicas must still run (test_replicas.py kills them last)"
    out = tmp_path / "run"
    arguments = ["--data", str(settings_from_workspace), "--target", f"openai:{replica.url}/v1"]
    arguments += ["--model", BASE_MODEL, "--top-k", "2", "--out", str(out)]
    result = CliRunner().invoke(eval_app, arguments)
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["model"] == BASE_MODEL and metrics["run"]["adapter"] is None
    assert metrics["run"]["target"] == f"openai:{replica.url}/v1"
    assert metrics["run"]["n"] == 3 and metrics["errors"] == 0
    assert metrics["retrieval"]["recall_at"]["20"] == 1.0, "retrieved here, from the demo index"
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(row["prompt_tokens"] > 0 and row["completion_tokens"] <= 8 for row in rows)
    assert all(row["prediction"] == row["prediction"].strip() for row in rows), "cleaned as for every target"
    assert "| tiny-gemma |" in (out / "row.md").read_text()


def test_the_chat_api_sends_the_prompt_as_one_user_message(replicas: list[ReplicaProcess], workspace: Path):
    """`--openai-api chat`: the engine over `/v1/chat/completions` (the endpoint applies its template)."""
    from transformers import AutoTokenizer

    counter = TokenCounter(AutoTokenizer.from_pretrained(workspace / BASE_MODEL))
    prompt = Prompter().qa("日本で最も高い山は何ですか？", ["富士山 富士山は日本で最も高い山である。"])
    answers = {}
    for api in ("completions", "chat"):
        engine = OpenAIEngine(f"{replicas[0].url}/v1", BASE_MODEL, counter, api, concurrency=2)
        completions = asyncio.run(engine.complete_many([prompt, prompt], Sampling(max_tokens=4)))
        assert all(c.completion_tokens <= 4 and c.prompt_tokens > 0 for c in completions)
        answers[api] = completions[0]
    assert answers["chat"].prompt_tokens > answers["completions"].prompt_tokens, (
        "wrapped in the chat template"
    )


def test_an_adapter_the_endpoint_serves_is_recorded_as_an_adapter_of_its_base(
    replicas: list[ReplicaProcess], settings_from_workspace: Path, workspace: Path, tmp_path: Path
):
    """vLLM lists a LoRA module with its base as `parent`: the run says base model and adapter apart."""
    url = replicas[0].url
    body = {"lora_name": "openai-b", "lora_path": str(workspace / "adapters" / "b")}
    httpx.post(f"{url}/v1/load_lora_adapter", json=body, timeout=120).raise_for_status()
    try:
        arguments = [
            "--data",
            str(settings_from_workspace),
            "--target",
            f"openai:{url}",
            "--model",
            "openai-b",
        ]
        result = CliRunner().invoke(eval_app, [*arguments, "--limit", "1", "--out", str(tmp_path / "b")])
        assert result.exit_code == 0, result.output + repr(result.exception)
        run = json.loads((tmp_path / "b" / "metrics.json").read_text())["run"]
        assert (run["model"], run["adapter"]) == (BASE_MODEL, "openai-b")
    finally:
        httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "openai-b"}, timeout=120)


def test_a_model_the_endpoint_does_not_serve_is_a_clear_error(
    replicas: list[ReplicaProcess], settings_from_workspace: Path, tmp_path: Path
):
    arguments = ["--data", str(settings_from_workspace), "--target", f"openai:{replicas[0].url}"]
    result = CliRunner().invoke(eval_app, [*arguments, "--model", "gpt-9", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "not --model 'gpt-9'" in str(result.exception)
