"""`benchmarks/multiturn_answers.py` asks the session server each written multi-turn case three ways and
scores every answer. The tiny model's answers are noise: what is checked is what each way sends and that
every case is asked and scored."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from server_fixtures import LiveServer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "multiturn_answers.py"


def test_each_case_is_asked_three_ways_and_scored(
    live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # it imports load.py and standalone_query.py beside it
    spec = importlib.util.spec_from_file_location("multiturn_answers", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cases = [json.loads(line) for line in script.CASES.read_text(encoding="utf-8").splitlines()]
    arita = next(case for case in cases if len(case["turns"]) == 2)

    chat = script.messages_of(arita, "chat")
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant", "user"]
    assert chat[-1]["content"] == arita["question"] == script.messages_of(arita, "bare")[0]["content"]
    [standalone] = script.messages_of(arita, "standalone")
    assert standalone["content"] != arita["question"] and standalone["content"].endswith(arita["question"])

    out = tmp_path / "results.json"
    argv = ["multiturn_answers.py", live.url, "--max-tokens", "4", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["cases"] == len(cases) and "tiny-gemma" in results["model"]
    assert set(results["scores"]) == set(script.WAYS)
    for way, rows in results["answers"].items():
        assert [row["id"] for row in rows] == [case["id"] for case in cases]
        assert 0 <= results["scores"][way]["exact"] <= results["scores"][way]["partial"] <= 1
    assert capsys.readouterr().out.count("\n") == 1 + len(cases)
