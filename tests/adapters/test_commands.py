"""`kotae train sft|cpt` turn their options into the run config: the options both take, with each command's
defaults, and the command's own."""

import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from kotae.adapters import commands
from kotae.adapters.config import CPTRunConfig, LoraSpec, RerankerRunConfig, SFTRunConfig
from kotae.core.cli_options import field_help


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, bool]]:
    """The (config, overwrite) of each run a command starts; no model is read and nothing trains."""
    runs: list[tuple[object, bool]] = []
    record = SimpleNamespace(
        **{
            name: lambda config, _console, overwrite: runs.append((config, overwrite))
            for name in ("train_sft", "train_cpt")
        }
    )
    monkeypatch.setitem(sys.modules, "kotae.adapters.sft", record)
    monkeypatch.setitem(sys.modules, "kotae.adapters.cpt", record)
    monkeypatch.setattr(commands, "resolve_base", Path)
    return runs


def invoke(*args: str) -> None:
    result = CliRunner().invoke(commands.train_app, list(args))
    assert result.exit_code == 0, result.output


def test_defaults_are_the_configs(started: list[tuple[object, bool]], tmp_path: Path) -> None:
    invoke("sft", "--base", "b", "--out", str(tmp_path / "s"), "--data", "qa.jsonl")
    invoke("cpt", "--base", "b", "--out", str(tmp_path / "c"), "--text", "p.jsonl")
    [(sft, sft_overwrite), (cpt, cpt_overwrite)] = started
    budget = commands.get_settings().context_token_budget
    assert sft == SFTRunConfig(
        base=Path("b"), out=tmp_path / "s", data=Path("qa.jsonl"), context_token_budget=budget
    )
    assert cpt == CPTRunConfig(base=Path("b"), out=tmp_path / "c", text=Path("p.jsonl"))
    assert not sft_overwrite and not cpt_overwrite
    assert sft.lora != cpt.lora and sft.learning_rate != cpt.learning_rate, "each command has its defaults"


def test_shared_and_own_options_reach_the_config(started: list[tuple[object, bool]], tmp_path: Path) -> None:
    invoke(
        "cpt", "--base", "b", "--out", str(tmp_path / "c"), "--text", "p.jsonl", "--train-embeddings",
        "--r", "4", "--alpha", "8", "--dropout", "0.1", "--target-modules", "q_proj, v_proj",
        "--learning-rate", "0.001", "--max-steps", "7", "--wandb", "--seed", "3", "--overwrite",
    )  # fmt: skip
    [(config, overwrite)] = started
    expected = replace(
        CPTRunConfig(base=Path("b"), out=tmp_path / "c", text=Path("p.jsonl"), train_embeddings=True),
        lora=LoraSpec(r=4, alpha=8, dropout=0.1, target_modules=("q_proj", "v_proj")),
        learning_rate=0.001,
        max_steps=7,
        wandb=True,
        seed=3,
    )
    assert config == expected and overwrite


def test_help_shows_each_commands_defaults() -> None:
    sft_help = CliRunner().invoke(commands.train_app, ["sft", "--help"], terminal_width=200).output
    cpt_help = CliRunner().invoke(commands.train_app, ["cpt", "--help"], terminal_width=200).output
    for option in ("--r", "--learning-rate", "--init-adapter", "--overwrite"):
        assert option in sft_help and option in cpt_help
    assert f"[default: {SFTRunConfig.__dataclass_fields__['lora'].default_factory().r}]" in sft_help


def test_each_option_says_what_its_fields_docstring_says() -> None:
    """The help of an option is its config field's docstring: each command's own where it has one."""
    group = typer.main.get_command(commands.train_app)
    for command, config, name in [
        ("sft", SFTRunConfig, "learning_rate"),
        ("cpt", CPTRunConfig, "learning_rate"),
        ("sft", SFTRunConfig, "negatives"),
        ("cpt", CPTRunConfig, "text"),
        ("reranker", RerankerRunConfig, "batch_size"),
    ]:
        helps = {param.name: param.help for param in group.commands[command].params}
        assert helps[name] == field_help(config)[name], (command, name)
    assert field_help(SFTRunConfig)["learning_rate"] != field_help(CPTRunConfig)["learning_rate"]
