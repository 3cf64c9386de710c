"""`benchmarks/dense_threads.py` times a Flat search for each batch size and OpenMP team, alone, beside busy
processes and beside a busy Python thread."""

import json
import subprocess
import sys

from benchmark_scripts import BENCHMARKS


def test_each_setting_is_timed() -> None:
    args = ["--count", "2000", "--questions", "1", "3", "--threads", "1", "2", "--busy-processes", "0", "1"]
    args += ["--switch-ms", "5", "--rounds", "3"]
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / "dense_threads.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = [json.loads(line) for line in finished.stdout.splitlines()]
    settings = [(r["busy_processes"], r["busy_thread_switch_ms"], r["questions"], r["threads"]) for r in rows]
    assert settings == [
        (busy, switch, questions, threads)
        for busy in (0, 1)
        for switch in (None, 5.0)
        for questions in (1, 3)
        for threads in (1, 2)
    ]
    assert all(row["p99_ms"] >= row["p50_ms"] > 0 and row["vectors"] == 2000 for row in rows)
