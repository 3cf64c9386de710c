"""How many sequences and tokens vLLM schedules per step, by what kotae runs: a server or a batch."""

from dataclasses import dataclass
from typing import Literal

from kotae.core.config import Settings

Workload = Literal["serve", "batch"]
"""`serve`: requests arrive one by one and someone waits for each answer (latency first). `batch`: a whole
`kotae eval` is submitted at once and only the last answer counts (throughput first)."""

CUDA_GRAPH_MAX_BATCH = 512
"""vLLM's own largest CUDA-graph batch: decode steps beyond it run without graphs, whose capture would only
lengthen the start."""


@dataclass(frozen=True, slots=True)
class SchedulerLimits:
    max_num_seqs: int | None
    """None: vLLM's default for its own OpenAI server on this device."""
    max_num_batched_tokens: int | None
    """None: as for `max_num_seqs`."""

    @property
    def cuda_graph_max_batch(self) -> int | None:
        """The largest decode batch to capture a CUDA graph for: no more sequences than a step can hold
        (vLLM's default captures up to twice that). None: vLLM's default."""
        if self.max_num_seqs is None:
            return None
        return min(self.max_num_seqs, CUDA_GRAPH_MAX_BATCH)


def scheduler_limits(settings: Settings, workload: Workload, on_gpu: bool) -> SchedulerLimits:
    """`KOTAE_MAX_NUM_SEQS` / `KOTAE_MAX_NUM_BATCHED_TOKENS` when set; otherwise, on a GPU, the workload's
    limits from the settings, and on a CPU vLLM's server defaults (its KV cache, not the step, bounds a
    CPU batch)."""
    if not on_gpu:
        return SchedulerLimits(settings.max_num_seqs, settings.max_num_batched_tokens)
    if workload == "serve":
        seqs, tokens = settings.serve_max_num_seqs, settings.serve_max_num_batched_tokens
    else:
        seqs, tokens = settings.batch_max_num_seqs, settings.batch_max_num_batched_tokens
    seqs = settings.max_num_seqs or seqs
    # vLLM refuses a step of fewer tokens than sequences.
    tokens = max(settings.max_num_batched_tokens or tokens, seqs)
    return SchedulerLimits(seqs, tokens)
