"""Peak memory of an eval run: resident memory from getrusage, GPU memory sampled from nvidia-smi.

Why nvidia-smi rather than `torch.cuda.max_memory_allocated`: the torch counters see only this
process's caching allocator, and vLLM's `AsyncLLM` always runs its engine core, which holds the weights
and the KV cache, in a child process (`VLLM_ENABLE_V1_MULTIPROCESSING=0` only affects the synchronous
`LLM` class); CUDA contexts are outside torch's counters in any case. nvidia-smi reports what the card
holds for each process: summing this process and its descendants is the run's GPU memory. Note that
vLLM reserves its KV cache up front (sized to the model and the workload's concurrency, or a share of the
card with `KOTAE_GPU_MEMORY_UTILIZATION`), so the peak mostly reflects that reservation, not what the
questions needed.

Where the container hides host process ids from nvidia-smi (no row matches ours), the fallback is the
device's used memory minus what was used when sampling began, and `source` says so: other programs
on the same card would then be counted too.
"""

import os
import resource
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType

SAMPLE_INTERVAL_S = 0.5
PROCESS_SOURCE = "nvidia-smi, this process and its children"
DEVICE_SOURCE = "nvidia-smi, device memory used minus the baseline at start (process ids not visible)"


def peak_rss_mb() -> tuple[float, float]:
    """(this process, largest reaped child) peak resident set sizes in MB; Linux reports KiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, children / 1024


class GpuMemoryMonitor:
    """Samples GPU memory in a background thread while the `with` block runs; a no-op without
    nvidia-smi (CPU machines), leaving `peak_mb` None."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._smi = shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline_mb = 0.0
        self._process_peak_mb: float | None = None
        self._device_peak_mb: float | None = None

    def __enter__(self) -> "GpuMemoryMonitor":
        if self._smi is not None:
            self._baseline_mb = sum(self._query(["--query-gpu=memory.used"]) or [0.0])
            self._thread = threading.Thread(target=self._run, name="gpu-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()  # catch a peak reached after the last tick

    @property
    def peak_mb(self) -> float | None:
        if self._process_peak_mb is not None:
            return self._process_peak_mb
        if self._device_peak_mb is not None:
            return max(self._device_peak_mb - self._baseline_mb, 0.0)
        return None

    @property
    def source(self) -> str | None:
        if self._process_peak_mb is not None:
            return PROCESS_SOURCE
        return DEVICE_SOURCE if self._device_peak_mb is not None else None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        ours = _process_tree(os.getpid())
        apps = self._query(["--query-compute-apps=pid,used_memory"], columns=2)
        held = [mb for pid, mb in zip(apps[::2], apps[1::2], strict=True) if int(pid) in ours]
        if held:
            self._process_peak_mb = max(self._process_peak_mb or 0.0, sum(held))
        device = self._query(["--query-gpu=memory.used"])
        if device:
            self._device_peak_mb = max(self._device_peak_mb or 0.0, sum(device))

    def _query(self, fields: list[str], columns: int = 1) -> list[float]:
        """nvidia-smi's numbers, row after row (`columns` per row); empty if it failed."""
        try:
            output = subprocess.run(
                [str(self._smi), *fields, "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (subprocess.SubprocessError, OSError):
            return []
        values = []
        for row in output.splitlines():
            cells = [cell.strip() for cell in row.split(",")]
            if len(cells) != columns:
                continue
            try:
                values.extend([float(cell) for cell in cells])
            except ValueError:
                continue  # "[N/A]" where a container hides a process's memory
        return values


def _process_tree(root: int) -> set[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The name field may hold spaces and parentheses: the parent id follows its last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = set(), [root]
    while pending:
        pid = pending.pop()
        tree.add(pid)
        pending.extend(children.get(pid, []))
    return tree
