"""`kotae eval --target openai:URL` refuses bad targets clearly, before any index or model is opened."""

import socket

import pytest
from typer.testing import CliRunner

from kotae.core.errors import KotaeError
from kotae.evals.commands import eval_app
from kotae.evals.openai_engine import base_url


def run(*arguments: str, tmp_path) -> BaseException | None:
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "富士山の高さは？", "answers": ["3776メートル"]}\n', encoding="utf-8")
    return (
        CliRunner()
        .invoke(eval_app, ["--data", str(data), "--out", str(tmp_path / "out"), *arguments])
        .exception
    )


def test_an_unreachable_endpoint(tmp_path):
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        error = run("--target", f"openai:{url}", "--model", "m", tmp_path=tmp_path)
    assert isinstance(error, KotaeError) and "cannot reach the endpoint" in str(error)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--target", "openai:localhost:8000", "--model", "m"), "needs an http"),
        (("--target", "openai:http://127.0.0.1:1"), "needs --model"),
        (("--model", "m"), "--model names the model"),
        (("--target", "ftp://x"), "--target must be"),
    ],
)
def test_bad_targets(arguments, message, tmp_path):
    error = run(*arguments, tmp_path=tmp_path)
    assert isinstance(error, KotaeError) and message in str(error)


def test_the_base_url_takes_either_form():
    assert (
        base_url("https://api.example.com/v1/")
        == base_url("https://api.example.com")
        == "https://api.example.com"
    )
