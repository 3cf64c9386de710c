"""vLLM and Triton compile into kotae's home, so that the next engine start on the machine reuses what they
compiled."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.rag.engine import configure_vllm_environment, triton_cache_dir, vllm_cache_root

SET_BY_KOTAE = (
    "VLLM_CACHE_ROOT",
    "TRITON_CACHE_DIR",
    "VLLM_WORKER_MULTIPROC_METHOD",
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_TUNED_CONFIG_FOLDER",
)


@pytest.mark.parametrize(
    ("variable", "folder", "leaf"),
    [("VLLM_CACHE_ROOT", vllm_cache_root, "vllm"), ("TRITON_CACHE_DIR", triton_cache_dir, "triton")],
)
def test_the_caches_follow_kotaes_home_unless_the_user_set_them(
    variable: str,
    folder: Callable[[Settings], Path],
    leaf: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SET_BY_KOTAE:  # restored as they were when the test ends
        monkeypatch.delenv(name, raising=False)
    first, second = Settings(home=tmp_path / "a"), Settings(home=tmp_path / "b")
    assert folder(first) == tmp_path / "a" / "cache" / leaf
    configure_vllm_environment(first)
    assert os.environ[variable] == str(folder(first))
    configure_vllm_environment(second)  # another home later in the same process: its own cache
    assert os.environ[variable] == str(folder(second))
    monkeypatch.setenv(variable, str(tmp_path / "mine"))
    configure_vllm_environment(first)
    assert os.environ[variable] == str(tmp_path / "mine")
