"""`benchmarks/load.py` runs end to end against the test server (a few seconds, tiny levels): the script
works and reports every figure; the real measurements are the lead's, on the default model."""

import argparse
import asyncio
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


def load_script():
    spec = importlib.util.spec_from_file_location("kotae_load_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_script_reports_each_level(live):
    load = load_script()
    args = argparse.Namespace(
        url=live.url,
        concurrency=[1, 4],
        duration=3.0,
        requests=8,
        endpoint="chat",
        max_tokens=4,
        adapter=None,
    )
    report = asyncio.run(load.main(args))
    assert [level["concurrency"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        assert level["requests"] > 0 and level["failed"] == 0 and level["statuses"] == {"200": level["ok"]}
        assert level["throughput_rps"] > 0 and 0 < level["latency_ms"]["p50"] <= level["latency_ms"]["p99"]
    assert all(len(report["load_average"][moment]) == 3 for moment in ("start", "end"))
    assert "| 4 |" in load.markdown(report) and "load average" in load.markdown(report)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com", "http://192.168.1.2"])
def test_load_script_refuses_non_loopback_targets(url):
    with pytest.raises(SystemExit):
        load_script().require_loopback(url)
