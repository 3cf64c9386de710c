"""The fork server that vLLM's engine cores are forked from: a forked process gets the environment of the
moment it starts, as a spawned one would, not the server's own."""

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
