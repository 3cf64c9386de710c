"""Options derived from a config dataclass: its fields' types, defaults, docstrings and settings."""

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from kotae.core.cli_options import config_options, field_help, overridden, settings_options, with_options


@dataclass(frozen=True, kw_only=True)
class Base:
    path: Path
    """Where it goes."""
    rate: float = 0.5
    """How fast,
    over two lines."""


@dataclass(frozen=True, kw_only=True)
class Child(Base):
    rate: float = 0.25
    """The child's own rate."""
    files: tuple[Path, ...] = ()
    """Repeatable."""
    count: int = field(default=3, metadata={"min": 1})
    undocumented: bool = False


def app_of(names: tuple[str, ...] | None = None, **defaults: Any) -> tuple[typer.Typer, list[Child]]:
    """A typer app whose one command builds a `Child` from the options, and the children it built."""
    built: list[Child] = []
    app = typer.Typer()

    @app.command()
    @with_options(config_options(Child, names, defaults), into="options")
    def command(*, options: dict[str, Any]) -> None:
        built.append(Child(**options))

    return app, built


def test_each_fields_docstring_on_one_line_the_subclass_first():
    assert field_help(Child) == {
        "path": "Where it goes.",
        "rate": "The child's own rate.",
        "files": "Repeatable.",
    }
    assert field_help(Base)["rate"] == "How fast, over two lines."


def test_the_options_build_the_config_with_its_defaults():
    app, built = app_of()
    result = CliRunner().invoke(app, ["--path", "p", "--files", "a", "--files", "b"])
    assert result.exit_code == 0, result.output
    # A repeated option arrives as a tuple, as configs keep them.
    assert built == [Child(path=Path("p"), files=(Path("a"), Path("b")))]


def option_help(app: typer.Typer) -> dict[str, tuple[str | None, Any]]:
    """Each option's help and default as `--help` shows them (read from the command, not the terminal's
    wrapped rendering of it)."""
    return {param.name: (param.help, param.default) for param in typer.main.get_command(app).params}


def test_help_is_the_docstring_and_shows_the_default():
    app, _ = app_of()
    assert option_help(app)["rate"] == ("The child's own rate.", 0.25)


def test_a_field_without_default_is_required_and_metadata_sets_the_option():
    app, built = app_of()
    assert CliRunner().invoke(app, []).exit_code == 2  # --path missing
    assert CliRunner().invoke(app, ["--path", "p", "--count", "0"]).exit_code == 2  # min 1
    assert not built


def test_a_subset_of_the_fields_with_other_defaults():
    app, built = app_of(("path", "rate"), rate=0.75, path=Path("d"))
    assert CliRunner().invoke(app, []).exit_code == 0
    assert CliRunner().invoke(app, ["--count", "2"]).exit_code == 2  # not an option here
    assert built == [Child(path=Path("d"), rate=0.75)]


class Knobs(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNOB_")

    port: int = Field(8000, ge=0, le=65535)
    """Where it listens."""
    name: str = "kotae"
    """What it is called."""


def test_settings_options_override_only_what_is_given(monkeypatch):
    monkeypatch.setenv("KNOB_NAME", "from-env")
    seen: list[Knobs] = []
    app = typer.Typer()

    @app.command()
    @with_options(settings_options(Knobs, ("port", "name")), into="overrides")
    def command(*, overrides: dict[str, Any]) -> None:
        seen.append(overridden(Knobs(), overrides))

    runner = CliRunner()
    assert runner.invoke(app, ["--port", "9000"]).exit_code == 0
    assert (seen[0].port, seen[0].name) == (9000, "from-env")  # unset: the environment's
    assert runner.invoke(app, ["--port", "70000"]).exit_code == 2  # the field's bound
    assert option_help(app)["port"][0] == "Where it listens. (unset: $KNOB_PORT, else its default)"


def test_without_sources_the_options_go_without_help(monkeypatch):
    @dataclass
    class Installed:
        rate: float = 0.5
        """Not readable where only bytecode is installed."""

    def no_source(_):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    assert field_help(Installed) == {}
    [option] = config_options(Installed)
    assert option.default == 0.5
