"""What serving one index from several processes costs in memory (the server and its search process,
`KOTAE_SERVE_RETRIEVAL_PROCESS`), with the full vectors read into each process against mapped from the
file (`DenseIndex.load(mapped=True)`, which `Index.open` uses): COUNT random unit vectors in a Flat index,
saved once; then, per mode, PROCESSES processes at once each load it and search it (every vector read) and,
while all of them hold it, report what loading it added to their memory: anonymous (private) and PSS (each
shared page split among the processes that map it). Prints one JSON line per mode.

    python benchmarks/mapped_vectors.py --count 1000000 --processes 2
"""

import argparse
import json
import multiprocessing
import platform
import tempfile
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

import faiss
import numpy as np

from kotae.indexer.dense import DenseIndex, FlatSpec

MiB = 2**20


def memory() -> dict[str, int]:
    """This process's Pss and Anonymous, in bytes (Linux's smaps_rollup)."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) * 1024
    return {"pss": fields["Pss"], "anonymous": fields["Anonymous"]}


def hold(path: str, mapped: bool, loaded: Barrier, measured: Barrier, queue: multiprocessing.Queue) -> None:
    before = memory()
    index = DenseIndex.load(Path(path), FlatSpec(), gpu=False, mapped=mapped)
    index.search(np.ones((1, index.dimension), dtype=np.float32), 3)  # Flat scans every vector
    loaded.wait()
    after = memory()
    queue.put({name: (after[name] - before[name]) / MiB for name in after})
    measured.wait()


def measure(path: Path, mapped: bool, processes: int) -> list[dict[str, float]]:
    context = multiprocessing.get_context("spawn")
    loaded, measured, queue = context.Barrier(processes), context.Barrier(processes), context.Queue()
    args = (str(path), mapped, loaded, measured, queue)
    workers = [context.Process(target=hold, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    added = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return added


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=384, help="multilingual-e5-small's")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    vectors = np.random.default_rng(0).standard_normal((args.count, args.dimension), dtype=np.float32)
    faiss.normalize_L2(vectors)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dense.faiss"
        DenseIndex.build(FlatSpec(), vectors, np.arange(args.count, dtype=np.int64)).save(path)
        del vectors
        for mapped in (False, True):
            added = measure(path, mapped, args.processes)
            row = {
                "mode": "mapped" if mapped else "read",
                "vectors_mib": round(path.stat().st_size / MiB),
                "processes": args.processes,
                "added_mib": {name: [round(a[name]) for a in added] for name in ("anonymous", "pss")},
                "date": datetime.now(UTC).date().isoformat(),
                "machine": platform.node(),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
