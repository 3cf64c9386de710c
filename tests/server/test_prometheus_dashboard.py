"""Every query of the Grafana dashboard, evaluated by a real Prometheus scraping the session's kotae server:
after a few requests each one returns data, and the same query with any of its metric names misspelled
returns none, so a misspelled panel fails here.

The Prometheus is Debian's `prometheus` package, which scripts/bootstrap.sh installs where apt works; the
test is skipped where the binary is absent."""

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import LiveServer, free_port
from test_dashboard_metrics import DASHBOARD, metric_names

from kotae.rag.engine_protocol import EngineDead

PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no `prometheus` binary on PATH: scripts/bootstrap.sh installs Debian's package as root where apt "
    "works (or: apt-get install prometheus)",
)

SCRAPE_INTERVAL_S = 1
READY_TIMEOUT_S = 120
SCRAPE_TIMEOUT_S = 120
QUESTION = {"question": "富士山の高さは？", "max_tokens": 8}
CHAT = {"model": "tiny-gemma", "messages": [{"role": "user", "content": "琵琶湖は何県？"}], "max_tokens": 8}


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str


def dashboard_queries() -> list[Query]:
    """The PromQL of every target of every panel, rows' nested panels included."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [
        Query(panel["title"], target["expr"])
        for panel in panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def concrete(expr: str, window_s: int) -> str:
    """The query Grafana would send: its interval variables replaced by a window that holds the test's
    traffic. A variable this does not know fails the test, so that a new one is given a value here."""
    values = {
        "__rate_interval": f"{window_s}s",
        "__interval": f"{window_s}s",
        "__range": f"{window_s}s",
        "__range_s": str(window_s),
        "__interval_ms": str(window_s * 1000),
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"Grafana variable ${name} has no test value: {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def misspelled(expr: str, name: str) -> str:
    """`expr` with the metric `name` missing its last letter."""
    return re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", name[:-1], expr)


def what_is_wrong(response: dict[str, Any]) -> str | None:
    """Why a query's answer would leave its panel blank: an error, no series, or no finite value."""
    if response.get("status") != "success":
        return f"error: {response.get('errorType')}: {response.get('error')}"
    data = response["data"]
    if data["resultType"] == "scalar":
        values = [data["result"][1]]
    else:
        values = [series["value"][1] for series in data["result"]]
    if not values:
        return "no data"
    if not any(math.isfinite(float(value)) for value in values):
        return f"no finite value: {values}"
    return None


class Prometheus:
    """A Prometheus process scraping one target every SCRAPE_INTERVAL_S."""

    def __init__(self, binary: str, target: str, folder: Path) -> None:
        config = folder / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "kotae",
                            "metrics_path": "/metrics",
                            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        with free_port() as sock:
            address = f"127.0.0.1:{sock.getsockname()[1]}"
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address={address}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started = time.time()
        self.http = httpx.Client(base_url=f"http://{address}", timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"prometheus exited:\n{self.output()}"
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready in time:\n{self.output()}"
            time.sleep(0.2)

    def query(self, expr: str) -> dict[str, Any]:
        return self.http.get("/api/v1/query", params={"query": expr}).json()

    def wait_for_scrape_after(self, moment: float) -> None:
        """Until a successful scrape of kotae started after `moment` (a `time.time()`)."""
        deadline = time.monotonic() + SCRAPE_TIMEOUT_S
        while True:
            # timestamp() of a selector is its sample's time (of an expression, the evaluation's).
            scrape = 'timestamp(up{job="kotae"}) and up{job="kotae"} == 1'
            result = self.query(scrape)["data"]["result"]
            if result and float(result[0]["value"][1]) > moment:
                return
            assert time.monotonic() < deadline, f"no successful scrape of kotae:\n{self.output()}"
            time.sleep(SCRAPE_INTERVAL_S / 4)

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    assert PROMETHEUS is not None
    server = Prometheus(PROMETHEUS, live.url.removeprefix("http://"), tmp_path_factory.mktemp("prometheus"))
    try:
        server.wait_ready()
        server.wait_for_scrape_after(server.started)
        yield server
    finally:
        server.stop()


def send_traffic(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the panels show: answers (QA with two adapters, chat on the base model), a request refused
    with 422, and one that fails with 503 because the engine reports itself dead mid-request (which is
    also a generation error of the default adapter)."""

    async def engine_dies(*args: object, **kwargs: object) -> None:
        raise EngineDead("the test says the engine died")

    with live.client() as http:
        for body in (QUESTION, {**QUESTION, "adapter": "b"}):
            response = http.post("/v1/qa", json=body)
            assert response.status_code == 200, response.text
        response = http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text
        assert http.post("/v1/qa", json={"question": ""}).status_code == 422
        service = live.app.state.kotae.service
        with monkeypatch.context() as patch:
            patch.setattr(service.pipeline, "answer", engine_dies)
            assert http.post("/v1/qa", json=QUESTION).status_code == 503


@needs_prometheus
def test_every_dashboard_query_returns_data(live: LiveServer, prometheus: Prometheus, monkeypatch):
    queries = dashboard_queries()
    assert queries, "the dashboard queries nothing"
    # A rate needs two samples of a series with an increase between them, and a labelled series appears
    # with its first request: so two rounds of traffic, each scraped.
    for _ in range(2):
        send_traffic(live, monkeypatch)
        prometheus.wait_for_scrape_after(time.time())
    window_s = math.ceil(time.time() - prometheus.started) + 5 * SCRAPE_INTERVAL_S

    blank = {}
    for query in queries:
        expr = concrete(query.expr, window_s)
        problem = what_is_wrong(prometheus.query(expr))
        if problem is not None:
            blank[f"{query.panel}: {expr}"] = problem
    assert not blank, f"panels without data:\n{json.dumps(blank, ensure_ascii=False, indent=1)}"

    # The same check fails on a query whose metric name is misspelled, for every name in every query.
    caught = {}
    for query in queries:
        names = metric_names(query.expr)
        assert names, f"no metric in {query.panel}: {query.expr}"
        for name in names:
            expr = concrete(misspelled(query.expr, name), window_s)
            assert expr != concrete(query.expr, window_s)
            caught[expr] = what_is_wrong(prometheus.query(expr))
    missed = [expr for expr, problem in caught.items() if problem is None]
    assert not missed, f"misspelled queries that still return data: {missed}"


@needs_prometheus
def test_query_syntax_errors_are_reported(prometheus: Prometheus):
    problem = what_is_wrong(prometheus.query("sum(rate(kotae_request_duration_seconds_count[1m])"))
    assert problem is not None and problem.startswith("error: bad_data"), problem


def test_grafana_variables_are_replaced():
    expr = "rate(a[$__rate_interval]) / ${__interval_ms}"
    assert concrete(expr, 30) == "rate(a[30s]) / 30000"
    with pytest.raises(AssertionError, match=r"\$instance"):
        concrete("up{instance=~'$instance'}", 30)
    assert misspelled(
        "vllm:num_requests_running + vllm:num_requests_running_x", "vllm:num_requests_running"
    ) == ("vllm:num_requests_runnin + vllm:num_requests_running_x")
