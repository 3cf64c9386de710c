"""`scripts/gpu/default_adapter.sh` refuses a wrong input before it spends the lease: nothing is pulled,
indexed or written when `INIT`, `TRAINED` or a data file is not where it says."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu" / "default_adapter.sh"
DATA_FILES = (
    "jawiki-paragraphs.jsonl",
    "qa/jsquad-valid-train.jsonl",
    "qa/jsquad-valid-dev.jsonl",
    "qa/jaquad-dev.jsonl",
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for name in DATA_FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_text("{}\n", encoding="utf-8")
    return tmp_path / "data"


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(REPO)],
        env={**os.environ, "R": str(tmp_path / "r"), "KOTAE_HOME": str(tmp_path / "home"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("variable", ["INIT", "TRAINED"])
def test_a_folder_that_only_holds_the_adapter_is_refused(tmp_path: Path, data: Path, variable: str) -> None:
    holder = tmp_path / "init"
    (holder / "default").mkdir(parents=True)
    (holder / "default" / "adapter_config.json").write_text("{}", encoding="utf-8")

    result = run(tmp_path, DATA=str(data), **{variable: str(holder)})

    assert result.returncode == 2
    assert f"{variable}={holder}: no adapter_config.json there" in result.stderr
    assert not (tmp_path / "r").exists(), "refused before anything is written"


@pytest.mark.parametrize("missing", ["qa/jaquad-dev.jsonl", "mix"])
def test_a_missing_data_file_is_named(tmp_path: Path, data: Path, missing: str) -> None:
    mix = tmp_path / "jaquad-train.jsonl"
    if missing != "mix":
        (data / missing).unlink()
        mix.write_text("{}\n", encoding="utf-8")

    result = run(tmp_path, DATA=str(data), MIX=str(mix))

    assert result.returncode == 2
    assert f"{mix if missing == 'mix' else data / missing}: no such file" in result.stderr
    assert not (tmp_path / "r").exists()
