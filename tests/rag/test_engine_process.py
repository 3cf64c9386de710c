"""The fork server that vLLM's engine cores are forked from: a forked process gets the environment of the
moment it starts, as a spawned one would, not the server's own, and it ends when the process that started it
is killed."""

import subprocess
import sys

import psutil
import pytest

from kotae.rag.engine_process import ENGINE_CORE_CONTEXT, start_engine_fork_server

MARK = "KOTAE_FORK_SERVER_TEST_MARK"
CHECK = f"import os, sys; sys.exit(0 if os.environ.get({MARK!r}) == 'set after the server started' else 3)"
"""Run in the forked process by `exec` (a builtin, so the process pickles without this module)."""


def test_a_forked_process_gets_the_environment_of_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    start_engine_fork_server()
    monkeypatch.setenv(MARK, "set after the server started")
    process = ENGINE_CORE_CONTEXT.Process(target=exec, args=(CHECK,))
    process.start()
    # The first fork waits for the server to import vLLM.
    process.join(timeout=300)
    assert process.exitcode == 0


OWNER = """
import time
from kotae.rag.engine_process import ENGINE_CORE_CONTEXT
process = ENGINE_CORE_CONTEXT.Process(target=time.sleep, args=(600,))
process.start()
print(process.pid, flush=True)
time.sleep(600)
"""
"""A process that forks one from the fork server, says its pid, and waits to be killed."""


def test_a_forked_process_ends_when_the_process_that_started_it_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    forked = psutil.Process(int(owner.stdout.readline()))
    owner.kill()
    owner.wait()
    _, alive = psutil.wait_procs([forked], timeout=60)
    assert not alive
