"""How many sequences and tokens vLLM schedules per step, and whether it keeps prompts' blocks for reuse, by
what kotae runs: a server or a batch."""

from dataclasses import dataclass
from typing import Literal

from kotae.core.config import Settings

Workload = Literal["serve", "batch"]
"""`serve`: requests arrive one by one and someone waits for each answer (latency first). `batch`: a whole
`kotae eval` is submitted at once and only the last answer counts (throughput first)."""

CUDA_GRAPH_MAX_BATCH = 1024
"""The largest decode batch kotae captures a CUDA graph for: a batch workload's whole `max_num_seqs`. vLLM's
own default stops at 512, and an eval's first decode steps after its last prefill hold 500 to 800
answers: without a graph, each took about 35 ms of GPU time on an H200 against 3–8 ms for a graphed one."""
CUDA_GRAPH_SIZES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
"""The decode batches kotae captures CUDA graphs for. A step runs the graph of the next size up, padded by at
most half its rows: a 270M model's decode step costs about the same for any of them. vLLM's default list
holds 51 sizes up to 512, and every graph is captured again at each start."""


@dataclass(frozen=True, slots=True)
class SchedulerLimits:
    max_num_seqs: int | None
    """None: vLLM's default for its own OpenAI server on this device."""
    max_num_batched_tokens: int | None
    """None: as for `max_num_seqs`."""
    prefix_caching: bool = True
    """vLLM's prefix cache: each prompt's blocks hashed and kept, for a later prompt that begins alike."""

    @property
    def cuda_graph_sizes(self) -> list[int] | None:
        """The decode batches to capture CUDA graphs for: `CUDA_GRAPH_SIZES` up to the most sequences a step
        holds (vLLM's default captures up to twice that), which is always one of them. None: vLLM's
        default."""
        if self.max_num_seqs is None:
            return None
        largest = min(self.max_num_seqs, CUDA_GRAPH_MAX_BATCH)
        return [size for size in CUDA_GRAPH_SIZES if size < largest] + [largest]


def scheduler_limits(settings: Settings, workload: Workload, on_gpu: bool) -> SchedulerLimits:
    """`KOTAE_MAX_NUM_SEQS` / `KOTAE_MAX_NUM_BATCHED_TOKENS` when set; otherwise, on a GPU, the workload's
    limits from the settings, and on a CPU vLLM's server defaults (its KV cache, not the step, bounds a
    CPU batch). The prefix cache serves every workload but a batch on a GPU
    (`Settings.batch_prefix_caching`)."""
    if not on_gpu:
        return SchedulerLimits(settings.max_num_seqs, settings.max_num_batched_tokens)
    if workload == "serve":
        seqs, tokens = settings.serve_max_num_seqs, settings.serve_max_num_batched_tokens
    else:
        seqs, tokens = settings.batch_max_num_seqs, settings.batch_max_num_batched_tokens
    seqs = settings.max_num_seqs or seqs
    # vLLM refuses a step of fewer tokens than sequences.
    tokens = max(settings.max_num_batched_tokens or tokens, seqs)
    return SchedulerLimits(seqs, tokens, workload == "serve" or settings.batch_prefix_caching)
