"""Marks `engine` every test that uses a fixture declared with `engine_marker.engine_fixture`."""

import pytest
from engine_marker import needs_engine


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_engine(item):
            item.add_marker(pytest.mark.engine)
