"""The short version of `benchmarks/soak.py` against the test server: 32 clients for 15 s while an adapter is
loaded and unloaded every second through the admin API — not one failed request, not one failed swap. The
10-minute, 64-client figures are in docs/BENCHMARKS.md."""

import asyncio
from pathlib import Path

import pytest
from server_fixtures import ADMIN_TOKEN

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def soak(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # soak.py imports load.py beside it
    monkeypatch.setenv("KOTAE_ADMIN_TOKEN", ADMIN_TOKEN)
    import soak

    return soak


def test_no_request_fails_while_an_adapter_comes_and_goes(live, soak):
    clients = ["--clients", "32", "--duration", "15", "--max-tokens", "8", "--endpoint", "chat"]
    args = soak.parse_args([live.url, *clients, "--swap-every", "1", "--swap-path", "pool/c"])
    report = asyncio.run(soak.main(args))
    assert report["requests"] > 32 and report["failed"] == 0 and report["server_errors"] == 0, report
    assert report["statuses"] == {"200": report["requests"]}
    swaps = report["swaps"]
    assert swaps["loads"] >= 5 and swaps["unloads"] == swaps["loads"] and not swaps["failed"], swaps
    assert report["throughput_rps"] > 0 and 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert "| 32 |" in soak.markdown(report)
    with live.admin() as admin:
        assert "soak" not in {a["name"] for a in admin.get("/admin/adapters").json()["data"]}


def test_soak_needs_the_admin_token(monkeypatch, soak):
    monkeypatch.delenv("KOTAE_ADMIN_TOKEN")
    with pytest.raises(SystemExit):
        soak.parse_args(["http://127.0.0.1:8000"])
