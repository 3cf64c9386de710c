"""`benchmarks/mapped_vectors.py`: processes that map the served vectors share them; processes that read
them each hold a copy."""

import json
import subprocess
import sys

from benchmark_scripts import BENCHMARKS


def test_mapped_vectors_are_shared_and_read_ones_are_copied() -> None:
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / "mapped_vectors.py"), "--count", "40000", "--processes", "2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = {row["mode"]: row for row in map(json.loads, finished.stdout.splitlines())}
    vectors = rows["read"]["vectors_mib"]  # 40,000 × 384 × 4 bytes: 59 MiB
    assert all(added >= 0.9 * vectors for added in rows["read"]["added_mib"]["anonymous"])
    assert all(added < 0.3 * vectors for added in rows["mapped"]["added_mib"]["anonymous"])
    # Two processes map one copy: each is charged about half of it.
    assert all(added < 0.7 * vectors for added in rows["mapped"]["added_mib"]["pss"])
