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
