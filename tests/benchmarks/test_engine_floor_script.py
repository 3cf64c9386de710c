"""`benchmarks/engine_floor.py`'s reading of a torch profiler trace; the runs themselves are the GPU's."""

from benchmark_scripts import load_script


def kernel(name: str, start_us: float, duration_us: float) -> dict:
    return {"ph": "X", "cat": "kernel", "name": name, "ts": start_us, "dur": duration_us}


def test_gpu_time_counts_overlapping_kernels_once_and_ranks_them_by_time() -> None:
    trace = {
        "traceEvents": [
            kernel("gemm", 0, 400),
            kernel("lora_shrink", 300, 200),  # overlaps the gemm by 100 µs
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 5000},  # host side: not GPU
            kernel("gemm", 900, 100),  # after a 400 µs gap
        ]
    }
    figures = load_script("engine_floor").gpu_time(trace)
    assert figures["kernels"] == 3
    assert figures["span_s"] == 1000e-6
    assert figures["busy_s"] == 600e-6
    assert figures["busy_share"] == 0.6
    assert figures["top"] == [{"name": "gemm", "s": 500e-6}, {"name": "lora_shrink", "s": 200e-6}]


def test_a_trace_without_gpu_work_says_so() -> None:
    assert load_script("engine_floor").gpu_time({"traceEvents": []}) == {"kernels": 0}


def step(category: str, name: str, start_us: float, duration_us: float) -> dict:
    return {"ph": "X", "cat": category, "name": name, "ts": start_us, "dur": duration_us}


def test_step_times_split_the_hosts_time_inside_and_between_the_engines_steps() -> None:
    prefill, decode = "execute_context_90(65000)_generation_0(0)", "execute_context_0(0)_generation_700(700)"
    trace = {
        "traceEvents": [
            step("user_annotation", prefill, 0, 30_000),
            step("gpu_user_annotation", prefill, 5_000, 150_000),
            step("user_annotation", decode, 180_000, 10_000),  # 150 ms after the prefill step's end
            step("gpu_user_annotation", decode, 185_000, 35_000),
            step("user_annotation", "some other range", 0, 999_000),
        ]
    }
    figures = load_script("engine_floor").step_times(trace)
    assert figures["steps"] == 2
    assert figures["span_s"] == 0.19
    assert figures["host_in_steps_s"] == 0.04
    assert figures["host_between_steps_s"] == 0.15
    assert figures["gpu_in_steps_s"] == 0.185
    assert figures["longest_gaps_before"] == [{"step": decode, "s": 0.15}]
    assert [row["step"] for row in figures["longest_gpu_steps"]] == [prefill, decode]
    assert figures["timeline"] == [
        {"step": prefill, "host_at": 0.0, "host": 30.0, "gpu_at": 5.0, "gpu": 150.0},
        {"step": decode, "host_at": 180.0, "host": 10.0, "gpu_at": 185.0, "gpu": 35.0},
    ]


def test_a_trace_without_engine_steps_says_so() -> None:
    assert load_script("engine_floor").step_times({"traceEvents": []}) == {"steps": 0}


def test_each_runs_answers_are_counted_against_the_first_runs() -> None:
    answers = {
        "full": ["a", "b", "c"],
        "strings": ["a", "b", "c"],
        "loops": ["a", "x", "c"],
        "full_again": ["y", "x", "c"],
        "prefill": ["z", "z", "z"],
    }
    assert load_script("engine_floor").different_answers(answers) == {
        "strings_different_answers": 0,
        "loops_different_answers": 1,
        "full_again_different_answers": 2,
    }
    assert load_script("engine_floor").different_answers({"strings": ["a"]}) == {}
