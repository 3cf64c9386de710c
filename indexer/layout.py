"""The files of an index directory, and the folders of collections."""

import re
from pathlib import Path
from typing import Literal

from kotae.core.errors import KotaeError

MANIFEST_FILE = "manifest.json"
STORE_FILE = "passages.sqlite"
DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"

IndexType = Literal["flat", "hnsw", "ivfpq"]
"""faiss index kinds `kotae index build --type` offers (see `dense.py`)."""

COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A collection is the folder of its name under the collections root: no separators, no leading dot."""


def collection_directory(root: Path, name: str) -> Path:
    """Where collection `name` lives under `root`; a name that is no plain folder name is refused."""
    if not COLLECTION_NAME.fullmatch(name):
        raise KotaeError(
            f"collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
            "or digit"
        )
    return root / name
