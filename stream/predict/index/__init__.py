"""Neighbour indexes: one small interface over exact and approximate searches on both backends.

An index is built from the training rows (``build_index``), given search parameters
(``NeighbourIndex.set_search``, tuned at train time against exact search), and queried in
batches (``kneighbors(rows, k) -> (distances, indices)``, true metric distances, nearest first).
Its parameters are plain data (:class:`IndexSpec`), its files the libraries' own binary formats
(``index_files``), so a model version stores it beside ``model.npz`` and a worker of either
backend loads it again (``load_index``): FAISS and hnswlib on a CPU, cuVS on a GPU.

``base`` holds the interface, the kinds and their errors, ``cpu`` the FAISS, hnswlib and
scikit-learn indexes, ``gpu`` the cuVS and cuML ones, ``registry`` which kind each backend builds
and loads, and how a stored index reaches the other backend.
"""

from stream.predict.index.base import (
    INDEX_KINDS,
    IndexKind,
    IndexSpec,
    NeighbourIndex,
    NeighbourIndexError,
    UnsupportedIndexError,
)
from stream.predict.index.registry import build_index, exact_index, index_file_bytes, load_index, stored_index

__all__ = [
    "INDEX_KINDS",
    "IndexKind",
    "IndexSpec",
    "NeighbourIndex",
    "NeighbourIndexError",
    "UnsupportedIndexError",
    "build_index",
    "exact_index",
    "index_file_bytes",
    "load_index",
    "stored_index",
]
