"""Files that are whole or absent, and on disk once written: for state a killed process resumes from; and
the sha256 of a file, read in blocks."""

import hashlib
import os
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Writes `data` beside `path`, flushes it, renames it into place and flushes the directory entry."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync(path.parent)


def sync(path: Path) -> None:
    """Flushes a file or a directory (its entries) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
