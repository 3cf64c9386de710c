"""Marks `engine` every test that uses a fixture declared with `engine_marker.engine_fixture`; the tiny
decoder models that tests of several packages share."""

from pathlib import Path

import pytest
from engine_marker import needs_engine


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_engine(item):
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kotae.models.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt_neox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kotae.models.testing import build_tiny_gpt_neox

    return build_tiny_gpt_neox(tmp_path_factory.mktemp("models") / "tiny-gpt-neox")


@pytest.fixture(scope="session")
def tiny_gpt_neox_japanese(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kotae.models.testing import build_tiny_gpt_neox_japanese

    return build_tiny_gpt_neox_japanese(tmp_path_factory.mktemp("models") / "tiny-gpt-neox-japanese")


@pytest.fixture(scope="session")
def tiny_rwkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kotae.models.testing import build_tiny_rwkv

    return build_tiny_rwkv(tmp_path_factory.mktemp("models") / "tiny-rwkv")
