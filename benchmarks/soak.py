"""Load with change: N concurrent clients (64 by default) asking the demo questions for a fixed time while an
adapter is loaded and unloaded every --swap-every seconds through the admin API. Loopback only.

    KOTAE_ADMIN_TOKEN=... python benchmarks/soak.py http://127.0.0.1:8000 --duration 600 --out runs/soak

The clients are load.py's (same requests, same figures); the swapped adapter (--swap-name, loaded from
--swap-path under the server's adapter directory) is one no client asks for, so every failed request is the
server's fault. Writes `soak.json` and `soak.md` into --out and prints the table.
"""

import argparse
import asyncio
import json
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from load import REQUEST_TIMEOUT_S, percentile, request_body, require_loopback, run_level, save_report

from kotae.demo import questions_path


@dataclass
class Swaps:
    """Admin calls made while the clients ran."""

    loads: int = 0
    unloads: int = 0
    failed: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        latencies = sorted(self.latencies_ms)
        return {
            "loads": self.loads,
            "unloads": self.unloads,
            "failed": self.failed,
            "latency_ms": {
                "p50": round(percentile(latencies, 50), 1),
                "max": round(max(latencies, default=0), 1),
            },
        }


async def swap_adapter(
    client: httpx.AsyncClient, args: argparse.Namespace, stop: asyncio.Event, swaps: Swaps
) -> None:
    """Every `swap_every` seconds: load the adapter if it is out, else unload it. Ends with it unloaded."""
    loaded = False
    while True:
        stopping = stop.is_set()
        if not stopping:
            try:
                await asyncio.wait_for(stop.wait(), args.swap_every)
                stopping = True
            except TimeoutError:
                pass
        if stopping and not loaded:
            return
        started = time.perf_counter()
        if loaded:
            response = await client.delete(f"/admin/adapters/{args.swap_name}")
            swaps.unloads += 1
        else:
            response = await client.post(
                "/admin/adapters", json={"name": args.swap_name, "path": args.swap_path}
            )
            swaps.loads += 1
        swaps.latencies_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            swaps.failed.append(f"{response.request.method} {response.status_code}: {response.text[:200]}")
        loaded = not loaded


async def main(args: argparse.Namespace) -> dict:
    require_loopback(args.url)
    questions = [
        json.loads(line)["question"] for line in questions_path().read_text(encoding="utf-8").splitlines()
    ]
    limits = httpx.Limits(max_connections=args.clients + 1, max_keepalive_connections=args.clients + 1)
    admin_headers = {"Authorization": f"Bearer {args.token}"}
    async with (
        httpx.AsyncClient(base_url=args.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client,
        httpx.AsyncClient(base_url=args.url, timeout=REQUEST_TIMEOUT_S, headers=admin_headers) as admin,
    ):
        (await client.get("/readyz")).raise_for_status()
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        path, body = request_body(args.endpoint, questions[0], args.max_tokens, args.adapter)
        (await client.post(path, json=body)).raise_for_status()  # warm-up: one-time costs are not load
        load_at_start = os.getloadavg()
        stop, swaps = asyncio.Event(), Swaps()
        swapper = asyncio.create_task(swap_adapter(admin, args, stop, swaps))
        level = await run_level(client, args.clients, questions, args)
        stop.set()
        await swapper
        load_at_end = os.getloadavg()
    summary = level.summary()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "load_average": {"start": load_at_start, "end": load_at_end},
        "url": args.url,
        "model": model,
        "endpoint": args.endpoint,
        "max_tokens": args.max_tokens,
        "duration_s": args.duration,
        "swap_every_s": args.swap_every,
        **summary,
        "server_errors": sum(count for status, count in level.statuses.items() if status.startswith("5")),
        "swaps": swaps.summary(),
    }


def markdown(report: dict) -> str:
    latency, swaps, load = report["latency_ms"], report["swaps"], report["load_average"]
    header = (
        f"Soak test, {report['date']}, {report['machine']}; server {report['url']} (model "
        f"{report['model']}, endpoint /v1/{report['endpoint']}, max_tokens {report['max_tokens']}); "
        f"load average {load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end."
    )
    columns = ["clients", "seconds", "requests", "failed", "5xx", "req/s", "p50 ms", "p99 ms"]
    row = [
        report["concurrency"],
        report["wall_s"],
        report["requests"],
        report["failed"],
        report["server_errors"],
        report["throughput_rps"],
        latency["p50"],
        latency["p99"],
        f"{swaps['loads']}/{swaps['unloads']}",
        len(swaps["failed"]),
    ]
    columns += ["adapter loads/unloads", "failed swaps"]
    return (
        "\n".join(
            [
                header,
                "",
                "| " + " | ".join(columns) + " |",
                "|" + "---:|" * len(columns),
                "| " + " | ".join(map(str, row)) + " |",
            ]
        )
        + "\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="kotae's base URL, on loopback (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds the clients keep asking")
    parser.add_argument(
        "--swap-every", type=float, default=10.0, help="seconds between adapter loads/unloads"
    )
    parser.add_argument("--swap-name", default="soak", help="name the swapped adapter is loaded under")
    parser.add_argument(
        "--swap-path", default="default", help="its folder, relative to the adapter directory"
    )
    parser.add_argument("--endpoint", choices=["qa", "chat"], default="qa")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--adapter", default=None, help="adapter (qa) or model (chat) the clients ask")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/soak"), help="folder for soak.json and soak.md"
    )
    args = parser.parse_args(argv)
    args.token = os.environ.get("KOTAE_ADMIN_TOKEN")
    if not args.token:
        parser.error("set KOTAE_ADMIN_TOKEN to the server's admin token")
    args.concurrency = [args.clients]
    args.requests = None  # run_level's per-level request cap: the duration bounds the run
    return args


if __name__ == "__main__":
    arguments = parse_args()
    report = asyncio.run(main(arguments))
    save_report(report, markdown(report), arguments.out, "soak")
