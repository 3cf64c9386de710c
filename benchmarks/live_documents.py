"""Knowledge that changes under load: N clients ask a collection through `/v1/qa` while a batch of new
documents is upserted into it every few seconds and the collection is rebuilt from its source and swapped
in every minute. Counts every failed request, and checks after each upsert that a question about one of
the new documents gets it among its sources.

    KOTAE_ADMIN_TOKEN=... python benchmarks/live_documents.py http://127.0.0.1:8000 \\
        --collection live --source kotae/demo/corpus.jsonl --duration 600 --out runs/live

The rebuild runs `kotae index build SOURCE --collection NAME` here (the server must read the same
collections root, `KOTAE_COLLECTIONS_DIR`); the server's watch serves the rebuilt index. Writes
`live.json` and `live.md` into --out.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from load import REQUEST_TIMEOUT_S, Level, percentile, require_loopback, save_report

from kotae.demo import questions_path

DOCUMENTS_PER_UPSERT = 10


def new_documents(round_number: int) -> list[dict[str, str]]:
    """Documents no corpus holds: each names a password found nowhere else."""
    return [
        {
            "id": f"live-{round_number}-{number}",
            "title": f"臨時告知{round_number}-{number}",
            "text": f"第{round_number}回の臨時告知。合言葉はZQ{round_number}X{number}である。",
        }
        for number in range(DOCUMENTS_PER_UPSERT)
    ]


async def ask(client: httpx.AsyncClient, level: Level, body: dict) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/qa", json=body)
        status = str(response.status_code)
    except httpx.HTTPError as error:
        response, status = None, type(error).__name__
    level.requests += 1
    level.statuses[status] = level.statuses.get(status, 0) + 1
    if response is not None and response.status_code == 200:
        level.ok += 1
        level.latencies_ms.append((time.perf_counter() - started) * 1000)
        level.completion_tokens += response.json()["usage"]["completion_tokens"]
        return response
    level.failed += 1
    return None


async def main(args: argparse.Namespace) -> dict:
    require_loopback(args.url)
    questions = [json.loads(line)["question"] for line in questions_path().read_text("utf-8").splitlines()]
    admin = {"Authorization": f"Bearer {os.environ['KOTAE_ADMIN_TOKEN']}"}
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    level = Level(args.clients)
    upserts: list[float] = []
    found = missed = 0
    rebuilds: list[float] = []
    rebuild_failures: list[str] = []
    deadline = time.perf_counter() + args.duration

    async with httpx.AsyncClient(base_url=args.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        (await client.get("/readyz")).raise_for_status()

        async def asker(offset: int) -> None:
            number = offset
            while time.perf_counter() < deadline:
                question = questions[number % len(questions)]
                await ask(
                    client,
                    level,
                    {"question": question, "max_tokens": args.max_tokens, "collection": args.collection},
                )
                number += args.clients

        async def upserter() -> None:
            nonlocal found, missed
            round_number = 0
            while time.perf_counter() + args.upsert_every < deadline:
                await asyncio.sleep(args.upsert_every)
                documents = new_documents(round_number)
                started = time.perf_counter()
                response = await client.post(
                    f"/v1/collections/{args.collection}/documents",
                    content="\n".join(json.dumps(d, ensure_ascii=False) for d in documents),
                    headers=admin,
                )
                upserts.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                probe = documents[round_number % DOCUMENTS_PER_UPSERT]
                password = probe["text"].split("合言葉は")[1].removesuffix("である。")
                body = {
                    "question": f"合言葉{password}は？",
                    "max_tokens": 1,
                    "collection": args.collection,
                    "retrieval": "bm25",
                }
                answered = await ask(client, level, body)
                ids = {source["id"] for source in answered.json()["sources"]} if answered else set()
                if probe["id"] in ids:
                    found += 1
                else:
                    missed += 1
                round_number += 1

        async def rebuilder() -> None:
            command = [
                str(Path(sys.executable).parent / "kotae"),
                "index",
                "build",
                str(args.source),
                "--collection",
                args.collection,
            ]
            while time.perf_counter() + args.rebuild_every < deadline:
                await asyncio.sleep(args.rebuild_every)
                started = time.perf_counter()
                process = await asyncio.create_subprocess_exec(
                    *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                _, error = await process.communicate()
                rebuilds.append(time.perf_counter() - started)
                if process.returncode:
                    rebuild_failures.append(error.decode(errors="replace")[-500:])

        load_at_start = os.getloadavg()
        started = time.perf_counter()
        await asyncio.gather(*(asker(n) for n in range(args.clients)), upserter(), rebuilder())
        level.wall_s = time.perf_counter() - started
        load_at_end = os.getloadavg()

    upserts.sort()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "url": args.url,
        "collection": args.collection,
        "duration_s": args.duration,
        "max_tokens": args.max_tokens,
        "load_average": {"start": load_at_start, "end": load_at_end},
        "requests": level.summary(),
        "upserts": {
            "batches": len(upserts),
            "documents_each": DOCUMENTS_PER_UPSERT,
            "p50_ms": round(percentile(upserts, 50), 1),
            "p99_ms": round(percentile(upserts, 99), 1),
            "found_right_after": found,
            "missed_right_after": missed,
        },
        "rebuilds": {
            "done": len(rebuilds),
            "failed": len(rebuild_failures),
            "seconds": [round(s, 1) for s in rebuilds],
            "errors": rebuild_failures,
        },
    }


def markdown(report: dict) -> str:
    requests, upserts, rebuilds = report["requests"], report["upserts"], report["rebuilds"]
    latency = requests["latency_ms"]
    return (
        f"Live documents under load, {report['date']}, {report['machine']}; collection "
        f"{report['collection']}, {report['duration_s']:g} s, load average "
        f"{report['load_average']['start'][0]} → {report['load_average']['end'][0]}.\n\n"
        "| clients | requests | failed | req/s | p50 ms | p99 ms | upsert batches | upsert p50 / p99 ms "
        "| found right after | rebuilds (failed) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {requests['concurrency']} | {requests['requests']} | {requests['failed']} "
        f"| {requests['throughput_rps']} | {latency['p50']} | {latency['p99']} | {upserts['batches']} "
        f"| {upserts['p50_ms']} / {upserts['p99_ms']} | {upserts['found_right_after']}/"
        f"{upserts['found_right_after'] + upserts['missed_right_after']} "
        f"| {rebuilds['done']} ({rebuilds['failed']}) |\n"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="kotae's base URL, on loopback")
    parser.add_argument("--collection", required=True, help="a collection under the collections root")
    parser.add_argument("--source", type=Path, required=True, help="what the collection is rebuilt from")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--upsert-every", type=float, default=5.0, help="seconds between upsert batches")
    parser.add_argument("--rebuild-every", type=float, default=60.0, help="seconds between rebuilds")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/live"))
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    report = asyncio.run(main(arguments))
    save_report(report, markdown(report), arguments.out, "live")
