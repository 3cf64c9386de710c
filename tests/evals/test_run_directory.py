"""Where a run is written when --out is not given: the name says which adapter answered."""

from datetime import datetime
from pathlib import Path

import pytest

from kotae.evals.config import EvalConfig
from kotae.evals.runner import RUNS_DIR, _out_dir

STARTED = datetime(2026, 11, 21, 9, 30, 0)


@pytest.mark.parametrize(
    ("adapter", "label", "name"),
    [
        (None, None, "default"),
        ("", None, "base"),
        ("sft-v2", None, "sft-v2"),
        ("", "base on 300 questions", "base_on_300_questions"),
    ],
)
def test_default_run_directory_names_the_adapter(adapter, label, name):
    config = EvalConfig(data=Path("qa/jsquad-valid.jsonl"), adapter=adapter, label=label)
    assert _out_dir(config, STARTED) == RUNS_DIR / f"20261121-093000-jsquad-valid-{name}"
