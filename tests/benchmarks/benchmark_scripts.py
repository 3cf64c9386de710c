"""Runs a script of `benchmarks/` in the test's process, as `python benchmarks/NAME.py ARGS` would."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kotae.core.config import get_settings

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """`benchmarks/NAME.py` as a module, its `main` not run."""
    spec = importlib.util.spec_from_file_location(f"kotae_benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def run_script(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`benchmarks/NAME.py ARGS`, with settings read afresh from the environment the test set."""
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    script = load_script(name)
    get_settings.cache_clear()
    try:
        script.main()
    finally:
        get_settings.cache_clear()
    return script
