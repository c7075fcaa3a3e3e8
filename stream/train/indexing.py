"""The served model's neighbour index: chosen, built, tuned and checked against exact search.

The index is built over the training rows on the training backend; its search parameters are
tuned (:mod:`stream.train.tuning`) on validation queries drawn from the holdout (rows the index
does not hold), then its recall@k and its predictions are measured against exact search on a
sample of the holdout. A CAGRA model is also tuned in its HNSW form, the one a CPU worker serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.backend import Backend
from stream.errors import TrainingError
from stream.predict.index import build_index, exact_index, load_index
from stream.predict.index.base import APPROXIMATE_METRICS, IndexLibraryMissingError, UnsupportedIndexError, check_metric
from stream.predict.model import KnnIndex, build_predictor
from stream.predict.vote import scaled
from stream.train.neighbours import r2_of_sums
from stream.train.tuning import exact_neighbours, recall_at_k, tune

log = logging.getLogger(__name__)
MAX_QUERIES = 10_000
VALIDATION_QUERIES = 2_000
# Below these sizes brute force is the faster search; on a CPU, HNSW overtakes IVF-Flat between
# 10,000 and 50,000 rows (docs/indexes.md: how they were measured).
CROSSOVER_ROWS: dict[Backend, int] = {"cpu": 2_000, "gpu": 100_000}
CPU_HNSW_FROM_ROWS = 50_000


@dataclass(frozen=True)
class ModelIndex:
    """An index's files (by name, beside ``model.npz``) and its manifest record."""

    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def choose_kind(kind: str, rows: int, backend: Backend, min_recall: float, metric: str) -> str:
    """``kind``, or for ``auto``: brute force below the crossover size, for exact recall or for a
    metric approximate indexes do not search; else the fastest approximate kind measured at that
    size (CAGRA on a GPU; IVF-Flat, then HNSW from 50,000 rows, on a CPU)."""
    if kind != "auto":
        return kind
    if rows < CROSSOVER_ROWS[backend] or min_recall >= 1.0 or metric not in APPROXIMATE_METRICS:
        return "brute"
    if backend == "gpu":
        return "cagra"
    return "hnsw" if rows >= CPU_HNSW_FROM_ROWS else "ivf-flat"


def check_buildable(kind: str, backend: Backend, metric: str) -> None:
    """Refuse, before any data is read, an index ``backend`` cannot build for ``metric``."""
    if kind == "auto":
        return
    check_metric(kind, metric)
    if kind == "cagra" and backend != "gpu":
        raise UnsupportedIndexError(
            "index cagra is built on the GPU backend (cuVS); on a CPU use --index hnsw, ivf-flat or ivf-pq"
        )


def build_model_index(
    kind: str,
    model: KnnIndex,
    backend: Backend,
    min_recall: float,
    holdout: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
    served: KnnIndex | None = None,
) -> ModelIndex:
    """Build and tune the index of ``kind`` for ``model`` (the training part's); measure it on
    ``holdout`` (rows, labels), rows that index does not hold. The files are those of the same
    index, with the same parameters, over ``served``'s rows (every row), when given."""
    chosen = choose_kind(kind, len(model.features), backend, min_recall, model.metric)
    if chosen == "brute":
        return ModelIndex({"kind": "brute", "params": {"build": {}, "search": {}}, "recall": 1.0})
    raw_queries, labels = _sample(holdout, seed)
    if len(raw_queries) == 0:
        raise TrainingError(f"index {chosen} is tuned on holdout rows, and the holdout is empty")
    queries = scaled(raw_queries, model.scale_mean, model.scale_scale, np)  # the index holds scaled rows
    validation = queries[:VALIDATION_QUERIES]
    exact = exact_index(model.features, model.metric, backend)
    with _timed(f"built index {chosen} over {len(model.features)} rows"):
        index = build_index(chosen, model.features, model.metric, backend)  # type: ignore[arg-type]
    with _timed(f"exact neighbours of {len(queries)} holdout rows"):
        truth = exact_neighbours(exact, queries, model.k)
    with _timed(f"tuned index {chosen} for recall@{model.k} >= {min_recall}"):
        tune(index, validation, truth[: len(validation)], model.k, min_recall)
    record: dict[str, Any] = {
        "kind": chosen,
        "built_on": backend,
        "min_recall": min_recall,
        "queries": len(queries),
        "recall": recall_at_k(index.kneighbors(queries, model.k)[1], truth),
        **agreement(model, backend, index, exact, raw_queries, labels),
    }
    if chosen == "cagra":
        cpu_recall = _tune_cpu_form(index, model, validation, queries, truth, min_recall)
        if cpu_recall is not None:
            record["cpu_recall"] = cpu_recall
    record["params"] = index.spec.to_json()
    with _timed("wrote the index files"):
        files = index.files() if served is None else _same_index_over(served, index, backend)
    log.info(
        "index %s %s: recall@%d %.4f on %d holdout rows",
        chosen,
        record["params"],
        model.k,
        record["recall"],
        len(queries),
    )
    return ModelIndex(record, files)


@contextmanager
def _timed(step: str) -> Iterator[None]:
    """Log how long ``step`` took: at millions of rows the building and writing take a while."""
    started = time.perf_counter()
    yield
    log.info("%s in %.1f s", step, time.perf_counter() - started)


def _tune_cpu_form(
    index: Any,
    model: KnnIndex,
    validation: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    min_recall: float,
) -> float | None:
    """Tune the CAGRA graph's HNSW form, which CPU workers serve; its recall. Without hnswlib
    here (``None``) the GPU form is published as it is: CPU workers need hnswlib to serve it
    anyway, and its search then keeps cuVS's default."""
    try:
        with _timed("wrote and tuned the CAGRA graph's HNSW form (CPU workers)"):
            form = load_index(index.spec, index.files(), model.features, model.metric, "cpu")
            tune(form, validation, truth[: len(validation)], model.k, min_recall)
    except IndexLibraryMissingError as exc:
        log.warning("the CAGRA graph's HNSW form is not tuned for CPU workers: %s", exc)
        return None
    index.set_search(form.spec.search)
    return recall_at_k(form.kneighbors(queries, model.k)[1], truth)


def _same_index_over(served: KnnIndex, tuned: Any, backend: Backend) -> dict[str, bytes]:
    """The files of an index like ``tuned`` (its kind, build and search parameters) over ``served``'s rows."""
    index = build_index(tuned.spec.kind, served.features, served.metric, backend, tuned.spec.build)
    index.set_search(tuned.spec.search)
    return index.files()


def agreement(
    model: KnnIndex, backend: Backend, index: Any, exact: Any, queries: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Classification: the share of ``queries`` given the label exact search gives. Regression: the
    holdout R² with the index minus the R² with exact search."""
    served, _ = build_predictor(model, backend, search=index).predict_host(queries)
    reference, _ = build_predictor(model, backend, search=exact).predict_host(queries)
    if model.task == "classification":
        return {"label_agreement": float(np.mean(served == reference))}
    truth = np.asarray(labels, dtype=np.float64)
    return {"r2_difference": _r2(truth, served) - _r2(truth, reference)}


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    spread = float(((truth - truth.mean()) ** 2).sum())
    residual = float(((truth - np.asarray(predicted, dtype=np.float64)) ** 2).sum())
    return r2_of_sums(residual, spread)


def _sample(holdout: tuple[np.ndarray, np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = holdout
    chosen = np.random.default_rng(seed).permutation(len(rows))[:MAX_QUERIES]
    return np.ascontiguousarray(rows[chosen], dtype=np.float32), np.asarray(labels)[chosen]


def describe_index(record: dict[str, Any]) -> str:
    """One line of a manifest's index record: kind, parameters, recall, agreement with exact search."""
    params = record.get("params", {})
    settings = {**params.get("build", {}), **params.get("search", {})}
    parts = [str(record.get("kind")), " ".join(f"{name}={value}" for name, value in settings.items())]
    parts += [
        f"{name}={record[name]:.4f}"
        for name in ("recall", "cpu_recall", "label_agreement", "r2_difference")
        if name in record
    ]
    return " ".join(part for part in parts if part)
