"""vLLM configures logging with `dictConfig` when an engine starts, which closes every log handler in the
process; tests start engines inside typer's CliRunner, which swaps sys.stdout and sys.stderr for its own."""

import logging.config
import sys

import pytest
from typer.testing import CliRunner


def test_logging_configured_inside_cli_runner_leaves_pytests_streams_open():
    # `import openvino` imports absl, whose handler closes the stream it was made with unless that is
    # sys.stderr at the time: here pytest's capture file, which every later test of the process writes to.
    pytest.importorskip("absl.logging")
    streams = sys.stdout, sys.stderr
    with CliRunner().isolation():
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})  # as vLLM's logger does
    assert [stream.closed for stream in streams] == [False, False]
