"""The `engine` marker follows the fixtures a test uses: a fixture that starts a vLLM engine or a server
declares it with `engine_fixture`, and every test that needs such a fixture, directly or through another
one, is marked `engine` at collection (tests/conftest.py). `make test-fast` leaves those tests out."""

from collections.abc import Callable
from typing import Any, Literal

import pytest

STARTS_ENGINE = "_kotae_starts_engine"
Scope = Literal["session", "package", "module", "class", "function"]


def engine_fixture(*, scope: Scope = "function") -> Callable[[Callable[..., Any]], Any]:
    """`pytest.fixture(scope=scope)` for a fixture that starts a vLLM engine or a server."""

    def declare(function: Callable[..., Any]) -> Any:
        setattr(function, STARTS_ENGINE, True)
        return pytest.fixture(scope=scope)(function)

    return declare


def needs_engine(item: pytest.Item) -> bool:
    # `_fixtureinfo` is pytest's record of every fixture a test closes over, with their definitions: the
    # only place where a fixture's function, and so its declaration, can be found from a test.
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None:
        return False
    return any(
        getattr(definition.func, STARTS_ENGINE, False)
        for definitions in fixture_info.name2fixturedefs.values()
        for definition in definitions
    )
