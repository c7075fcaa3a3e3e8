"""GPU memory: does a model fit, and predicting in pieces small enough for the device.

Brute-force KNN needs the index on the device plus, per query row, a tile of distances; cuML
tiles that work itself, but a batch can still be too large for what is left. The check at
load time refuses a model that cannot fit with one clear message; at predict time a batch that
runs out of memory is split in halves and retried, down to a floor, instead of failing the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from stream.errors import KnnStreamError

log = logging.getLogger(__name__)
Frame = TypeVar("Frame")
MIN_ROWS = 256


class DeviceMemoryError(KnnStreamError):
    """The model (with its largest batch) does not fit the GPU's memory."""


def required_bytes(index_rows: int, n_features: int, batch_rows: int, k: int, index_bytes: int = 0) -> int:
    """Device memory a prediction needs: the rows, an approximate index's own structure (the size of
    its stored files), one batch, its neighbours and one distance tile."""
    index = index_rows * n_features * 4 + index_bytes
    batch = batch_rows * n_features * 4
    neighbours = batch_rows * k * (4 + 8)
    tile = min(batch_rows, 4096) * min(index_rows, 65_536) * 4
    return index + batch + neighbours + tile


def check_fits(
    index_rows: int, n_features: int, batch_rows: int, k: int, free_bytes: int, index_bytes: int = 0
) -> None:
    """Raise :class:`DeviceMemoryError` when the model and a batch of ``batch_rows`` do not fit."""
    needed = required_bytes(index_rows, n_features, batch_rows, k, index_bytes)
    if needed > free_bytes:
        raise DeviceMemoryError(
            f"the model ({index_rows:,} x {n_features}) with batches of {batch_rows:,} rows needs"
            f" {needed / 2**30:.2f} GiB of GPU memory, but only {free_bytes / 2**30:.2f} GiB is free;"
            " use smaller batches (--batch-max-records), a GPU with more memory, or the CPU backend"
        )


def free_device_bytes() -> int:
    import cupy

    free, _total = cupy.cuda.runtime.memGetInfo()
    return int(free)


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(sign in text for sign in ("out of memory", "out_of_memory", "bad_alloc"))


def predict_in_pieces(
    predict: Callable[[Any], Frame], rows: Any, concat: Callable[[list[Frame]], Frame], max_rows: int
) -> Frame:
    """``predict(rows)``, in pieces of at most ``max_rows``, halving a piece that runs out of memory."""
    pieces: list[Frame] = []
    start, size, total = 0, max_rows, len(rows)
    while start < total or not pieces:
        piece = rows[start : start + size]
        try:
            pieces.append(predict(piece))
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc) or size <= MIN_ROWS:
                raise
            size = max(MIN_ROWS, size // 2)
            log.warning("GPU out of memory on %d rows; retrying in pieces of %d", len(piece), size)
            continue
        start += len(piece)
        if total == 0:
            break
    return pieces[0] if len(pieces) == 1 else concat(pieces)
