"""Command-line options derived from config dataclasses and from kotae's settings: each field's type,
default and docstring make its option, so a knob is declared once, in its config, and `--help` says what
the config says."""

import ast
import functools
import inspect
import itertools
import textwrap
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Annotated, Any, TypeVar

import typer
from pydantic_settings import BaseSettings

Command = TypeVar("Command", bound=Callable[..., Any])
Settings = TypeVar("Settings", bound=BaseSettings)


@functools.cache
def field_help(config: type) -> dict[str, str]:
    """Each field's docstring (the string right below the field) of `config`, a dataclass or a pydantic
    model, and of the bases that declare its fields, on one line each; a subclass's own docstring wins over
    its base's."""
    names = {f.name for f in fields(config)} if is_dataclass(config) else set(config.model_fields)  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for cls in reversed(config.__mro__):
        if not names & set(vars(cls).get("__annotations__", {})):
            continue
        try:
            source = inspect.getsource(cls)
        except OSError:  # installed without its sources: the options go without help
            continue
        [definition] = ast.parse(textwrap.dedent(source)).body
        assert isinstance(definition, ast.ClassDef)
        body = definition.body
        for statement, after in itertools.pairwise(body):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[statement.target.id] = " ".join(after.value.value.split())
    return {name: doc for name, doc in docs.items() if name in names}


def config_defaults(config: type) -> dict[str, Any]:
    """The default of each field of the dataclass `config` that has one (a factory's, made)."""
    return {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(config)
        if f.default is not MISSING or f.default_factory is not MISSING
    }


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword-only parameter that typer reads as the option `name` (`annotation`: its type, annotated with
    its `typer.Option`); `with_options` adds it to a command. With `inspect.Parameter.empty` as its default,
    typer requires it."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def config_options(
    config: type, names: Iterable[str] | None = None, defaults: Mapping[str, Any] | None = None
) -> list[inspect.Parameter]:
    """Keyword-only parameters that typer reads as options, one per field of the dataclass `config` (those
    in `names`, in that order, or every field): the field's type, its default (or the one `defaults` gives),
    its docstring as help and its `metadata` as the option's settings (`{"min": 1}`). A field without a
    default is an option typer requires."""
    by_name = {f.name: f for f in fields(config)}
    types = typing.get_type_hints(config)
    docs = field_help(config)
    known = config_defaults(config) | dict(defaults or {})
    options = []
    for name in by_name if names is None else names:
        kind, default = types[name], known.get(name, inspect.Parameter.empty)
        if (
            typing.get_origin(kind) is tuple
        ):  # a repeated option: typer gives a list (`with_options`: a tuple)
            kind = list[typing.get_args(kind)[0]]  # type: ignore[misc]
            default = default if default is inspect.Parameter.empty else list(default)
        typer_option = typer.Option(help=docs.get(name), **by_name[name].metadata)
        options.append(option(name, Annotated[kind, typer_option], default))
    return options


def settings_options(settings: type[BaseSettings], names: Iterable[str]) -> list[inspect.Parameter]:
    """Keyword-only parameters that typer reads as options, one per field of `settings` in `names`, each
    overriding it for one run: unset (None), the field keeps what the environment or its default gives.
    The help is the field's docstring and names its variable; its bounds are the option's."""
    docs = field_help(settings)
    prefix = settings.model_config.get("env_prefix", "")
    options = []
    for name in names:
        info = settings.model_fields[name]
        bounds = {
            key: value
            for constraint in info.metadata
            for bound, key in (("ge", "min"), ("le", "max"))
            if (value := getattr(constraint, bound, None)) is not None
        }
        help_text = f"{docs[name]} (unset: ${prefix}{name.upper()}, else its default)"
        annotation = Annotated[info.annotation | None, typer.Option(help=help_text, **bounds)]  # type: ignore[operator]
        options.append(option(name, annotation, None))
    return options


def overridden(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """`settings` with the `settings_options` a run was given (those left unset keep their value)."""
    return settings.model_copy(update={name: value for name, value in overrides.items() if value is not None})


def with_options(
    options: list[inspect.Parameter], into: str, make: Callable[[dict[str, Any]], Any] = dict
) -> Callable[[Command], Command]:
    """Gives a typer command the `options` (`config_options`) beside its own parameters; it receives their
    values, a repeated option's as a tuple (as configs keep them), as one dict, or what `make` makes of it,
    as its keyword `into`."""
    names = [option.name for option in options]

    def decorate(command: Command) -> Command:
        own = [p for p in inspect.signature(command).parameters.values() if p.name != into]

        @functools.wraps(command)
        def run(**given: Any) -> Any:
            values = {name: _as_config_value(given.pop(name)) for name in names}
            return command(**given, **{into: make(values)})

        # typer reads the options from the signature and the annotations.
        run.__signature__ = inspect.Signature([*own, *options], return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in [*own, *options]} | {"return": None}
        return run  # type: ignore[return-value]

    return decorate


def _as_config_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
