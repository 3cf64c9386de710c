"""Data the indexer tests share (a module of its own: every test folder has a `conftest`, and pytest's
default import mode would let one shadow another)."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kotae.indexer.embedder import Embedder

FIXTURES = Path(__file__).parent / "fixtures"
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

# Short passages on unrelated subjects, so that BM25 has one clear answer per question below.
CORPUS = [
    {
        "id": "p-mikan",
        "title": "みかん島",
        "text": "みかん島は内海に浮かぶ島である。島の人口は約800人で、柑橘の栽培が盛んである。",
    },
    {
        "id": "p-kurumi",
        "title": "くるみ山",
        "text": "くるみ山は標高512メートルの山である。登山道は二本ある。",
    },
    {
        "id": "p-sanseiken",
        "title": "外国人参政権",
        "text": "外国人参政権とは、国籍を持たない住民に選挙権を認める制度である。各国で議論が続いている。",
    },
    {"id": "p-toudai", "title": "白浜灯台", "text": "白浜灯台は1890年に建てられた。初代の灯台守は三人いた。"},
    {
        "id": "p-ramen",
        "title": "味噌ラーメン",
        "text": "味噌ラーメンは札幌で生まれた料理である。濃厚なスープが特徴である。",
    },
    {
        "id": "p-shinkansen",
        "title": "新幹線",
        "text": "新幹線は1964年に開業した高速鉄道である。東京と大阪を結んだ。",
    },
]


class FailingEmbedder(Embedder):
    """The real embedder, failing at the first passage batch: a build that breaks halfway."""

    def __init__(self, real: Embedder) -> None:
        self.__dict__.update(real.__dict__)

    def embed_passages(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False, **options: object
    ) -> np.ndarray:
        raise RuntimeError("embedding failed")
