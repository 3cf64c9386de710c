"""vLLM compiles into kotae's home, so that the next engine start on the machine reuses what it compiled."""

import os
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.rag.engine import configure_vllm_environment, vllm_cache_root

SET_BY_KOTAE = (
    "VLLM_CACHE_ROOT",
    "VLLM_WORKER_MULTIPROC_METHOD",
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_TUNED_CONFIG_FOLDER",
)


def test_the_cache_root_follows_kotaes_home_unless_the_user_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SET_BY_KOTAE:  # restored as they were when the test ends
        monkeypatch.delenv(name, raising=False)
    first, second = Settings(home=tmp_path / "a"), Settings(home=tmp_path / "b")
    assert vllm_cache_root(first) == tmp_path / "a" / "cache" / "vllm"
    configure_vllm_environment(first)
    assert os.environ["VLLM_CACHE_ROOT"] == str(vllm_cache_root(first))
    configure_vllm_environment(second)  # another home later in the same process: its own cache
    assert os.environ["VLLM_CACHE_ROOT"] == str(vllm_cache_root(second))
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "mine"))
    configure_vllm_environment(first)
    assert os.environ["VLLM_CACHE_ROOT"] == str(tmp_path / "mine")
