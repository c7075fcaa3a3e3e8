"""Search parameters tuned against exact search: the fastest setting whose recall@k reaches a target.

Each index offers a grid of search settings, cheapest first (:meth:`NeighbourIndex.search_grid`).
Every setting is tried on the validation queries, its recall@k measured against the exact
neighbours and its time taken; the search stops a few settings after the first that reaches the
target (later ones search more and are slower), and the fastest setting measured at or above the
target wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.backend import to_host_numpy
from stream.errors import TrainingError
from stream.predict.index import NeighbourIndex
from stream.predict.index.base import Params

log = logging.getLogger(__name__)
SETTINGS_PAST_FIRST_HIT = 3


class RecallNotReachedError(TrainingError):
    """No search setting of the index reaches the recall asked for."""


@dataclass(frozen=True)
class Trial:
    params: Params
    recall: float
    seconds: float


@dataclass(frozen=True)
class Tuned:
    params: Params
    recall: float
    trials: tuple[Trial, ...]


def recall_at_k(found: Any, exact: Any) -> float:
    """Share of the exact k nearest rows that the search found, over every query."""
    found_rows, exact_rows = to_host_numpy(found), to_host_numpy(exact)
    k = exact_rows.shape[1]
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found_rows, exact_rows, strict=True))
    return hits / (k * len(exact_rows)) if len(exact_rows) else 1.0


def tune(index: NeighbourIndex, queries: Any, exact_neighbours: Any, k: int, min_recall: float) -> Tuned:
    """Set ``index`` to its fastest search setting with recall@k ≥ ``min_recall`` and return it."""
    trials: list[Trial] = []
    past_first_hit = -1
    for params in index.search_grid(k):
        trial = _trial(index, params, queries, exact_neighbours, k)
        trials.append(trial)
        if trial.recall >= min_recall:
            past_first_hit += 1
        if past_first_hit >= SETTINGS_PAST_FIRST_HIT or trial.recall >= 1.0:
            break
    reaching = [trial for trial in trials if trial.recall >= min_recall]
    if not reaching:
        best = max(trials, key=lambda trial: trial.recall)
        raise RecallNotReachedError(
            f"index {index.spec.kind} reaches recall@{k} {best.recall:.4f} at best ({_describe(best.params)}),"
            f" below --min-recall {min_recall}; lower --min-recall or choose another --index (brute is exact)"
        )
    chosen = min(reaching, key=lambda trial: trial.seconds)
    index.set_search(chosen.params)
    log.info("index %s: %s reaches recall@%d %.4f", index.spec.kind, _describe(chosen.params), k, chosen.recall)
    return Tuned(chosen.params, chosen.recall, tuple(trials))


def _trial(index: NeighbourIndex, params: Params, queries: Any, exact_neighbours: Any, k: int) -> Trial:
    index.set_search(params)
    index.kneighbors(queries[: min(len(queries), 256)], k)  # warm-up: first calls pay one-time costs
    started = time.perf_counter()
    _, found = index.kneighbors(queries, k)
    found = to_host_numpy(found)
    seconds = time.perf_counter() - started
    return Trial(params, recall_at_k(found, exact_neighbours), seconds)


def _describe(params: Params) -> str:
    return " ".join(f"{name}={value}" for name, value in params.items()) or "defaults"


def exact_neighbours(exact: NeighbourIndex, queries: Any, k: int) -> np.ndarray:
    return to_host_numpy(exact.kneighbors(queries, k)[1])
