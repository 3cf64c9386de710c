"""`benchmarks/pyspy_summary.py`'s reading of py-spy's raw output; the recordings themselves are the GPU's."""

import gzip

from benchmark_scripts import load_script

CORE = 'process 7:"python3 -c from multiprocessing.forkserver import main"'
LOOP = "run_busy_loop (vllm/v1/engine/core.py:1)"
SCHEDULE = "schedule (/site-packages/vllm/sched.py:9)"
LINES = [
    # The engine core's loop: scheduling twice as often as sampling, hashing blocks inside the schedule.
    f"{CORE};thread (7): MainThread;{LOOP};{SCHEDULE};hash_block (vllm/h.py:2) 40",
    f"{CORE};thread (7): MainThread;{LOOP};{SCHEDULE} 20",
    f"{CORE};thread (7): MainThread;{LOOP};sample_tokens (vllm/runner.py:5) 30",
    # Its start, outside the loop; and a recursive function, counted once per sample.
    f"{CORE};thread (7): MainThread;load_model (vllm/loader.py:3) 100",
    'process 5:"python3 eval.py";thread (5): MainThread;walk (a.py:1);walk (a.py:2) 10',
    "not a line of py-spy's",
]


def test_each_thread_gets_its_functions_inclusive_and_self_time() -> None:
    summary = load_script("pyspy_summary").summarize(LINES, rate=100, top=10)
    core, walker = summary
    assert (core["process"], core["thread"], core["s"]) == (
        "7 python3 -c from multiprocessing.forkserver import main",
        "MainThread",
        1.9,
    )
    inclusive = {row["function"]: row["s"] for row in core["inclusive"]}
    assert inclusive["schedule (vllm/sched.py)"] == 0.6  # the path from site-packages/ on
    assert inclusive["run_busy_loop (vllm/v1/engine/core.py)"] == 0.9
    assert {row["function"]: row["s"] for row in core["self"]}["hash_block (vllm/h.py)"] == 0.4
    assert walker["inclusive"] == [{"function": "walk (a.py)", "s": 0.1}]


def test_within_keeps_the_stacks_through_a_function(tmp_path) -> None:
    script = load_script("pyspy_summary")
    recording = tmp_path / "eval.txt.gz"
    with gzip.open(recording, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(LINES) + "\n")
    [core] = script.summarize(script.read_lines(recording), rate=100, within="run_busy_loop")
    assert core["s"] == 0.9
    assert [row["function"] for row in core["self"]] == [
        "hash_block (vllm/h.py)",
        "sample_tokens (vllm/runner.py)",
        "schedule (vllm/sched.py)",
    ]
