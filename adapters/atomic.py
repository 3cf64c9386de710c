"""Adapter and model outputs that appear whole or not at all: a crash mid-save never leaves a half-written
adapter or model where the server (or a later training step) would load it."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kotae.core.durable import staged_directory
from kotae.core.errors import KotaeError


def check_target(target: Path, overwrite: bool) -> None:
    """Fail before any work when the output exists and may not be replaced."""
    if target.exists() and not overwrite:
        raise KotaeError(f"{target} already exists; choose another --out or pass --overwrite")


@contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside `target` to write into; on success it replaces `target` (with
    `overwrite`) or becomes it (`kotae.core.durable.staged_directory`)."""
    check_target(target, overwrite)
    with staged_directory(target) as staging:
        yield staging
