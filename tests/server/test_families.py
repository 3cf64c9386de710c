"""Every family kotae serves: a tiny random model of it (real config class, real tokenizer) trains an adapter
with `kotae train sft` and answers `/v1/qa` with it, the prompt in the adapter's format, on the engine chosen
for its architecture (vLLM where vLLM serves it with LoRA, else transformers).

One test per family, each paying one training run and one engine start."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from engine_marker import engine_fixture
from server_fixtures import app_serving, server_settings, tiny_pipeline

from kotae.rag.prompt import Prompter, PromptFormat

pytestmark = pytest.mark.slow  # each trains an adapter on the CPU

ALPACA = Path(__file__).parents[1] / "adapters" / "data" / "alpaca-ja.jsonl"
QUESTION = "日本で最も高い山は何ですか？"


@dataclass(frozen=True)
class Family:
    name: str
    model: str
    """The session fixture of its tiny model (tests/conftest.py)."""
    prompt_format: PromptFormat
    """Trained in a format other than the default, so that the served prompt shows which one was used."""
    engine: str
    """The engine kotae picks for it, as `/v1/models` names it."""


FAMILIES = [
    Family("llama", "tiny_llama", "chat-template", "vllm"),
    Family("gpt-neox", "tiny_gpt_neox", "rwkv", "vllm"),
    Family("gpt-neox-japanese", "tiny_gpt_neox_japanese", "record-line", "transformers"),
    Family("rwkv-4", "tiny_rwkv", "rwkv", "transformers"),
]


@dataclass(frozen=True)
class TrainedFamily:
    family: Family
    base: Path
    adapters: Path
    """The adapter root, holding `tuned`."""


@pytest.fixture(params=FAMILIES, ids=[family.name for family in FAMILIES])
def trained(request: pytest.FixtureRequest, tmp_path: Path) -> TrainedFamily:
    from typer.testing import CliRunner

    from kotae.adapters.commands import train_app

    family: Family = request.param
    base: Path = request.getfixturevalue(family.model)
    adapters = tmp_path / "adapters"
    args = ["sft", "--base", str(base), "--data", str(ALPACA), "--out", str(adapters / "tuned")]
    args += ["--prompt-format", family.prompt_format, "--r", "8", "--max-steps", "1", "--batch-size", "3"]
    args += ["--grad-accumulation", "1", "--eval-fraction", "0", "--probe-every", "0"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    return TrainedFamily(family, base, adapters)


@engine_fixture()
def family_server(trained: TrainedFamily, workspace: Path) -> Iterator[str]:
    """kotae on the family's model with its adapter, the session's tiny E5 and demo index: the URL."""
    from kotae.server.app import create_app

    settings = server_settings(
        workspace, generator=str(trained.base), adapter_dir=trained.adapters, index_watch_s=0
    )
    with app_serving(create_app(settings, pipeline_factory=tiny_pipeline)) as url:
        yield url


def test_family_trains_an_adapter_that_answers_over_http_in_its_format(
    trained: TrainedFamily, family_server: str
) -> None:
    from transformers import AutoTokenizer

    from kotae.core.passage import Passage
    from kotae.rag.prompt import context_line

    [base] = [m for m in httpx.get(f"{family_server}/v1/models").json()["data"] if m["parent"] is None]
    assert base["kotae_engine"] == trained.family.engine

    question = {"question": QUESTION, "adapter": "tuned", "top_k": 2, "include_text": True}
    reply = httpx.post(f"{family_server}/v1/qa", json=question, timeout=120)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["adapter"] == "tuned" and body["usage"]["completion_tokens"] >= 1

    tokenizer = AutoTokenizer.from_pretrained(trained.base)
    lines = [context_line(Passage(s["id"], s["title"], s["text"])) for s in body["sources"]]
    assert lines and not any(s["cut"] for s in body["sources"])

    def tokens(prompt_format: PromptFormat) -> int:
        return len(tokenizer(Prompter(prompt_format, tokenizer).qa(QUESTION, lines))["input_ids"])

    assert body["usage"]["prompt_tokens"] == tokens(trained.family.prompt_format) != tokens("alpaca-ja")
