"""The `kotae` command starts fast, stays safe to re-import in vLLM's spawned engine process, and answers
`kotae ask`."""

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kotae.indexer.embedder import Embedder

HEAVY = ("torch", "vllm", "numba", "bm25s", "faiss", "transformers", "sentence_transformers")


def test_importing_the_cli_loads_no_heavy_library():
    # vLLM's spawned engine core re-imports the console script; numba in that process crashes its start.
    code = f"import sys, kotae.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_help_lists_every_job():
    out = subprocess.run(
        [sys.executable, "-m", "kotae", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("models", "index", "ask", "serve", "eval", "train", "merge", "quantize"):
        assert command in out


@pytest.mark.engine  # starts the transformers engine on a tiny GPT-NeoX-Japanese
def test_ask_answers_and_lists_its_sources(
    tiny_gpt_neox_japanese: Path,
    tiny_e5: Path,
    embedder: "Embedder",
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from kotae.cli import app
    from kotae.core.config import get_settings
    from kotae.demo import corpus_path
    from kotae.indexer.build import build_index

    build_index([corpus_path()], tmp_path / "index", embedder, workers=0)
    monkeypatch.setenv("KOTAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTAE_GENERATOR", str(tiny_gpt_neox_japanese))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    # The random embedder's cosines would stop every question before the model.
    monkeypatch.setenv("KOTAE_ABSTAIN_MIN_COSINE", "0")
    question = "富士山の高さは何メートルですか？"
    arguments = ["ask", question, "--index", str(tmp_path / "index"), "--adapter", "", "--show-prompt"]
    get_settings.cache_clear()  # read these settings, and leave none of them to later tests
    try:
        done = CliRunner().invoke(app, [*arguments, "--max-tokens", "4", "--top-k", "2"], terminal_width=200)
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    prompt, answer = done.output.split(" answer ", 1)
    assert question in prompt
    assert "sources" in answer and "retrieve" in answer and "tokens" in answer
