"""vLLM's per-step limits by workload: throughput for a batch, latency for a server, vLLM's own on a CPU."""

from kotae.core.config import Settings
from kotae.rag.scheduler_limits import (
    CUDA_GRAPH_MAX_BATCH,
    CUDA_GRAPH_SIZES,
    SchedulerLimits,
    scheduler_limits,
)


def test_a_gpu_gets_the_workloads_limits() -> None:
    settings = Settings()
    serve = scheduler_limits(settings, "serve", on_gpu=True)
    batch = scheduler_limits(settings, "batch", on_gpu=True)
    assert serve == SchedulerLimits(settings.serve_max_num_seqs, settings.serve_max_num_batched_tokens)
    assert batch == SchedulerLimits(
        settings.batch_max_num_seqs, settings.batch_max_num_batched_tokens, prefix_caching=False
    )
    assert batch.max_num_batched_tokens > serve.max_num_batched_tokens  # type: ignore[operator]


def test_a_batch_on_a_gpu_keeps_no_prefix_cache_unless_told() -> None:
    assert scheduler_limits(Settings(), "serve", on_gpu=True).prefix_caching
    assert not scheduler_limits(Settings(), "batch", on_gpu=True).prefix_caching
    assert scheduler_limits(Settings(batch_prefix_caching=True), "batch", on_gpu=True).prefix_caching
    assert scheduler_limits(Settings(), "batch", on_gpu=False).prefix_caching


def test_a_cpu_keeps_vllms_defaults_unless_told() -> None:
    assert scheduler_limits(Settings(), "batch", on_gpu=False) == SchedulerLimits(None, None)
    told = Settings(max_num_seqs=8, max_num_batched_tokens=4096)
    assert scheduler_limits(told, "serve", on_gpu=False) == SchedulerLimits(8, 4096)


def test_the_overrides_win_for_every_workload() -> None:
    settings = Settings(max_num_seqs=64, max_num_batched_tokens=32)
    for workload in ("serve", "batch"):
        # A step holds at least one token per sequence: vLLM refuses fewer.
        limits = scheduler_limits(settings, workload, on_gpu=True)
        assert (limits.max_num_seqs, limits.max_num_batched_tokens) == (64, 64)


def test_cuda_graphs_are_captured_up_to_the_batch_a_step_holds() -> None:
    assert SchedulerLimits(256, 8192).cuda_graph_sizes == [
        1,
        2,
        4,
        6,
        8,
        12,
        16,
        24,
        32,
        48,
        64,
        96,
        128,
        192,
        256,
    ]
    assert SchedulerLimits(1024, 65536).cuda_graph_sizes == list(CUDA_GRAPH_SIZES)
    assert SchedulerLimits(100, 8192).cuda_graph_sizes[-3:] == [64, 96, 100]  # type: ignore[index]
    assert SchedulerLimits(None, None).cuda_graph_sizes is None


def test_a_step_pads_its_decode_batch_by_at_most_half() -> None:
    sizes = SchedulerLimits(1024, 65536).cuda_graph_sizes
    assert sizes is not None and sizes[-1] == CUDA_GRAPH_MAX_BATCH
    for rows in range(1, CUDA_GRAPH_MAX_BATCH + 1):
        graph = next(size for size in sizes if size >= rows)
        assert graph <= max(rows * 1.5, rows + 1)


def test_every_decode_batch_of_a_batch_workload_has_a_graph() -> None:
    # An eval's decode steps right after its last prefill hold most of its answers: eager, each costs ×5.
    settings = Settings()
    sizes = scheduler_limits(settings, "batch", on_gpu=True).cuda_graph_sizes
    assert sizes is not None and sizes[-1] == settings.batch_max_num_seqs
