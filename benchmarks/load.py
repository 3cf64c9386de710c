"""Bounded load test of a running kotae: N concurrent clients (1, 8, 32 by default) asking the demo
questions in a loop, each level for a fixed duration or request count, loopback only.

    python benchmarks/load.py http://127.0.0.1:8000 --duration 60 --out runs/load

Writes `load.json` (every figure) and `load.md` (a table for docs/BENCHMARKS.md) into --out and prints
the table. Throughput counts successful requests; latency percentiles are over successful requests.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from kotae.demo import questions_path

REQUEST_TIMEOUT_S = 300.0


@dataclass
class Level:
    concurrency: int
    requests: int = 0
    ok: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    completion_tokens: int = 0

    def summary(self) -> dict[str, object]:
        latencies = sorted(self.latencies_ms)
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "statuses": self.statuses,
            "wall_s": round(self.wall_s, 2),
            "throughput_rps": round(self.ok / self.wall_s, 3) if self.wall_s else 0.0,
            "completion_tokens_per_s": round(self.completion_tokens / self.wall_s, 1) if self.wall_s else 0.0,
            "latency_ms": {
                "p50": round(percentile(latencies, 50), 1),
                "p90": round(percentile(latencies, 90), 1),
                "p99": round(percentile(latencies, 99), 1),
                "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
                "max": round(latencies[-1], 1) if latencies else 0.0,
            },
        }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def require_loopback(url: str) -> None:
    """Load is only ever sent to this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing to load {url}: only loopback addresses (127.0.0.0/8, ::1, localhost)")


def request_body(endpoint: str, question: str, max_tokens: int, adapter: str | None) -> tuple[str, dict]:
    if endpoint == "qa":
        body: dict[str, object] = {"question": question, "max_tokens": max_tokens}
        if adapter is not None:
            body["adapter"] = adapter
        return "/v1/qa", body
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}
    if adapter is not None:
        body["model"] = adapter
    return "/v1/chat/completions", body


async def run_level(
    client: httpx.AsyncClient,
    concurrency: int,
    questions: list[str],
    args: argparse.Namespace,
) -> Level:
    level = Level(concurrency)
    deadline = time.perf_counter() + args.duration
    budget = args.requests
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            number = next(counter)
            if budget is not None and number >= budget:
                return
            path, body = request_body(
                args.endpoint, questions[number % len(questions)], args.max_tokens, args.adapter
            )
            started = time.perf_counter()
            try:
                response = await client.post(path, json=body)
                status = str(response.status_code)
            except httpx.HTTPError as error:
                response, status = None, type(error).__name__
            elapsed_ms = (time.perf_counter() - started) * 1000
            level.requests += 1
            level.statuses[status] = level.statuses.get(status, 0) + 1
            if response is not None and response.status_code == 200:
                level.ok += 1
                level.latencies_ms.append(elapsed_ms)
                level.completion_tokens += response.json()["usage"]["completion_tokens"]
            else:
                level.failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    level.wall_s = time.perf_counter() - started
    return level


def markdown(report: dict) -> str:
    lines = [
        f"Load test, {report['date']}, {report['machine']}; server {report['url']} "
        f"(model {report['model']}, endpoint /v1/{report['endpoint']}, max_tokens {report['max_tokens']}); "
        f"load average {report['load_average']['start'][0]} at the start, {report['load_average']['end'][0]} "
        "at the end.",
        "",
        "| clients | requests | failed | req/s | tokens/s | p50 ms | p90 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in report["levels"]:
        latency = level["latency_ms"]
        lines.append(
            f"| {level['concurrency']} | {level['requests']} | {level['failed']} | {level['throughput_rps']} "
            f"| {level['completion_tokens_per_s']} | {latency['p50']} | {latency['p90']} | {latency['p99']} |"
        )
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> dict:
    require_loopback(args.url)
    questions = [
        json.loads(line)["question"] for line in questions_path().read_text(encoding="utf-8").splitlines()
    ]
    limits = httpx.Limits(
        max_connections=max(args.concurrency), max_keepalive_connections=max(args.concurrency)
    )
    async with httpx.AsyncClient(base_url=args.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        (await client.get("/readyz")).raise_for_status()
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        # One warm-up request: the first pays one-time costs (kernels, caches) that are not load.
        path, body = request_body(args.endpoint, questions[0], args.max_tokens, args.adapter)
        (await client.post(path, json=body)).raise_for_status()
        # On a shared machine other work slows the server: the report says how busy it was.
        load_at_start = os.getloadavg()
        levels = [await run_level(client, n, questions, args) for n in args.concurrency]
        load_at_end = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "url": args.url,
        "model": model,
        "adapter": args.adapter,
        "endpoint": args.endpoint,
        "max_tokens": args.max_tokens,
        "duration_s_per_level": args.duration,
        "request_cap_per_level": args.requests,
        "load_average": {"start": load_at_start, "end": load_at_end},
        "levels": [level.summary() for level in levels],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="kotae's base URL, on loopback (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="client counts")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per level (upper bound)")
    parser.add_argument("--requests", type=int, default=None, help="requests per level (upper bound)")
    parser.add_argument("--endpoint", choices=["qa", "chat"], default="qa")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--adapter", default=None, help="adapter (qa) or model (chat); default: server's")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/load"), help="folder for load.json and load.md"
    )
    return parser.parse_args()


def save_report(report: dict, table: str, out: Path, name: str) -> None:
    """`NAME.json` (every figure) and `NAME.md` (the table) into `out`; the table is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / f"{name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    arguments = parse_args()
    report = asyncio.run(main(arguments))
    save_report(report, markdown(report), arguments.out, "load")
