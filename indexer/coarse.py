"""IVF's coarse quantizer computed with torch on a device (a GPU): spherical k-means of the training sample
and the nearest centroid of each vector added. At millions of passages faiss-cpu spends minutes on exactly
these two products of every vector with every centroid, which a GPU does in seconds; faiss's GPU builds do
not install beside the lent machine's CUDA. faiss keeps everything else: the product quantizer, the lists,
the search."""

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_ROWS_PER_PRODUCT = 32_768
"""Rows scored against every centroid at once: 1.2 GB of scores at 9,390 centroids."""
ITERATIONS = 10
"""k-means iterations, as faiss's IVF training does by default."""


class CoarseQuantizer:
    """Unit-length centroids and the nearest one (by inner product) of any vector."""

    def __init__(self, centroids: np.ndarray, device: str) -> None:
        import torch

        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self._on_device = torch.from_numpy(self.centroids).to(device)

    @classmethod
    def trained(cls, sample: np.ndarray, clusters: int, device: str, seed: int = 0) -> "CoarseQuantizer":
        """Spherical k-means of `sample` (unit vectors): centroids start at distinct sample rows chosen by
        `seed`; a cluster left empty restarts at a random row."""
        import torch

        points = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32)).to(device)
        rng = np.random.default_rng(seed)
        starts = torch.from_numpy(rng.choice(len(points), clusters, replace=False)).to(device)
        centroids = points[starts].clone()
        for _ in range(ITERATIONS):
            nearest = _nearest(points, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, nearest, points)
            empty = torch.bincount(nearest, minlength=clusters) == 0
            centroids = torch.nn.functional.normalize(sums, dim=1)
            if bool(empty.any()):
                restarts = rng.choice(len(points), int(empty.sum()), replace=False)
                centroids[empty] = points[torch.from_numpy(restarts).to(device)]
        return cls(centroids.cpu().numpy(), device)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest centroid of each vector (int64, faiss's list numbers)."""
        import torch

        points = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self._on_device.device)
        return _nearest(points, self._on_device).cpu().numpy().astype(np.int64)


def _nearest(points: "torch.Tensor", centroids: "torch.Tensor") -> "torch.Tensor":
    import torch

    parts = [
        (points[start : start + _ROWS_PER_PRODUCT] @ centroids.T).argmax(dim=1)
        for start in range(0, len(points), _ROWS_PER_PRODUCT)
    ]
    return torch.cat(parts)
