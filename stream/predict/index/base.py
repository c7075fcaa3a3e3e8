"""The interface every neighbour index has, its parameters as data, and its errors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from stream.errors import KnnStreamError

IndexKind = Literal["brute", "ivf-flat", "ivf-pq", "cagra", "hnsw"]
INDEX_KINDS: tuple[IndexKind, ...] = ("brute", "ivf-flat", "ivf-pq", "cagra", "hnsw")
# Approximate kinds search L2; their squared distances are turned into euclidean ones.
APPROXIMATE_METRICS = ("euclidean",)
Params = dict[str, int]


class NeighbourIndexError(KnnStreamError):
    """A neighbour index cannot be built, loaded or searched as asked."""


class UnsupportedIndexError(NeighbourIndexError):
    """The index kind cannot be built (or served) on this backend, or for this metric."""


class IndexLibraryMissingError(UnsupportedIndexError):
    """The library that serves this index kind here is not installed (an optional extra)."""


@dataclass(frozen=True)
class IndexSpec:
    """An index as data: its kind, how it was built, and how it searches."""

    kind: IndexKind
    build: Params = field(default_factory=dict)
    search: Params = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"build": dict(self.build), "search": dict(self.search)}

    @classmethod
    def from_json(cls, kind: str, params: dict[str, Any]) -> IndexSpec:
        if kind not in INDEX_KINDS:
            raise UnsupportedIndexError(f"unknown index kind {kind!r}; known: {', '.join(INDEX_KINDS)}")
        build = {str(name): int(value) for name, value in params.get("build", {}).items()}
        search = {str(name): int(value) for name, value in params.get("search", {}).items()}
        return cls(kind, build, search)


class NeighbourIndex(Protocol):
    """What the predictor and the tuning need of an index."""

    spec: IndexSpec

    def kneighbors(self, rows: Any, k: int) -> tuple[Any, Any]:
        """Distances (the true metric's) and row numbers of the k nearest rows, nearest first."""
        ...

    def search_grid(self, k: int) -> list[Params]:
        """Search settings to try, cheapest (fastest, least recall) first."""
        ...

    def set_search(self, params: Params) -> None:
        """Search with ``params`` from now on (one of :meth:`search_grid`'s, or a stored one)."""
        ...

    def files(self) -> dict[str, bytes]:
        """The index in its library's own binary format, by file name (empty: rebuilt from rows)."""
        ...


def check_metric(kind: str, metric: str) -> None:
    if kind != "brute" and metric not in APPROXIMATE_METRICS:
        raise UnsupportedIndexError(
            f"index {kind} searches the euclidean metric only, not {metric}; use --index brute for {metric}"
        )


def default_n_lists(rows: int) -> int:
    """Inverted lists: about 4·√rows, with at least 39 training rows per list (FAISS's floor)."""
    return max(1, min(int(4 * math.sqrt(rows)), rows // 39))


def default_pq_dim(n_features: int) -> int:
    """Sub-quantizers of IVF-PQ: half the features (two per code), a divisor of their number."""
    for dim in range(max(1, n_features // 2), 0, -1):
        if n_features % dim == 0:
            return dim
    return 1


def default_pq_bits(rows: int) -> int:
    """Bits per code: 8 (256 centroids per sub-space) once there are rows enough to train them."""
    return 8 if rows >= 256 * 39 else 4


def probe_grid(n_lists: int) -> list[int]:
    values = [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512]
    return [value for value in values if value < n_lists] + [n_lists]


REFINE_RATIOS = (1, 2, 4, 8)  # IVF-PQ candidates per neighbour, refined on the rows


def ivf_search_grid(kind: str, n_lists: int) -> list[Params]:
    """The IVF search settings tuning tries, cheapest probes first (both backends: FAISS and cuVS)."""
    probes = probe_grid(n_lists)
    if kind == "ivf-flat":
        return [{"n_probes": probe} for probe in probes]
    return [{"n_probes": probe, "refine_ratio": ratio} for probe in probes for ratio in REFINE_RATIOS]


def ef_grid(k: int) -> list[int]:
    return sorted({max(k, value) for value in (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)})


def minkowski_power(metric: str, p: float | None) -> dict[str, float]:
    """The ``p`` keyword a minkowski search takes (none for the other metrics)."""
    return {"p": p} if metric == "minkowski" and p is not None else {}


class ExactSearchSettings:
    """What an exact search answers to the index interface: nothing to tune, nothing to store
    (its rows are the model's own)."""

    def search_grid(self, k: int) -> list[Params]:
        return [{}]

    def set_search(self, params: Params) -> None:
        return None

    def files(self) -> dict[str, bytes]:
        return {}
