"""What the served model does around its neighbour search, as scikit-learn does it.

Scaling is ``StandardScaler``'s (the training rows' mean and population standard deviation,
a constant column left unscaled), weights are ``KNeighbors*``'s (``uniform``, or ``distance``:
inverse distance, where a query at distance zero from some training rows takes only those rows
into account), the vote and the class probabilities are ``KNeighborsClassifier``'s
(``predict_proba``; the most weight wins, a tie goes to the smallest class) and the regression
value is ``KNeighborsRegressor``'s weighted mean, in float64. Every function takes the array
module (``numpy`` or ``cupy``), so both backends run the same code.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Scale = Literal["none", "standard"]
Weights = Literal["uniform", "distance"]


def fit_standard_scale(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``StandardScaler().fit(features)``'s ``mean_`` and ``scale_``, in float64."""
    rows = np.asarray(features, dtype=np.float64)
    mean = rows.mean(axis=0)
    variance = rows.var(axis=0)
    scale = np.sqrt(variance)
    # scikit-learn's _is_constant_feature: a variance within rounding error of zero
    eps = np.finfo(np.float64).eps
    constant = variance <= len(rows) * eps * variance + (len(rows) * mean * eps) ** 2
    scale[constant] = 1.0
    return mean, scale


def scaled(rows: Any, mean: Any, scale: Any, xp: Any) -> Any:
    """``rows`` in the model's space, as float32: standardised in float64 when the model has a
    scale (``mean`` not empty), else as they are."""
    if len(mean) == 0:
        return xp.asarray(rows, dtype=xp.float32)
    standardised = (xp.asarray(rows, dtype=xp.float64) - xp.asarray(mean)) / xp.asarray(scale)
    return standardised.astype(xp.float32)


def neighbour_distances(rows: Any, neighbours: Any, metric: str, p: float, xp: Any) -> Any:
    """The ``metric`` distances from each row to its neighbours' rows (``rows``: (n, d);
    ``neighbours``: (n, k, d)), computed directly in float64.

    A search's own distances may come from the expanded form (``|q|² + |x|² - 2 q·x``, in float32
    on a GPU), where a query sitting on a training row is a small distance away rather than at
    zero; the distance weights (and their zero-distance rule) need the true figure.
    """
    queries = xp.asarray(rows, dtype=xp.float64)[:, None, :]
    found = xp.asarray(neighbours, dtype=xp.float64)
    if metric == "cosine":
        dot = (queries * found).sum(axis=2)
        norms = xp.sqrt((queries**2).sum(axis=2)) * xp.sqrt((found**2).sum(axis=2))
        with np.errstate(invalid="ignore", divide="ignore"):
            similarity = xp.where(norms > 0, dot / norms, 0.0)
        return xp.clip(1.0 - similarity, 0.0, 2.0)
    difference = xp.abs(queries - found)
    if metric == "manhattan":
        return difference.sum(axis=2)
    power = 2.0 if metric == "euclidean" else p
    return (difference**power).sum(axis=2) ** (1.0 / power)


def neighbour_weights(distances: Any, weights: Weights, xp: Any) -> Any | None:
    """scikit-learn's ``_get_weights``: ``None`` for uniform; else ``1 / distance`` in float64,
    and on a row with a neighbour at distance zero, 1 for those neighbours and 0 for the others."""
    if weights == "uniform":
        return None
    with np.errstate(divide="ignore"):
        inverse = 1.0 / xp.asarray(distances, dtype=xp.float64)
    at_zero = xp.isinf(inverse)
    rows_at_zero = at_zero.any(axis=1, keepdims=True)
    return xp.where(rows_at_zero, at_zero.astype(xp.float64), inverse)


def class_totals(neighbour_codes: Any, n_classes: int, xp: Any, weights: Any | None = None) -> Any:
    """Per row and class: how many of the neighbours (uniform) or how much of their weight."""
    rows = neighbour_codes.shape[0]
    totals = xp.zeros((rows, n_classes), dtype=xp.int32 if weights is None else xp.float64)
    row_numbers = xp.arange(rows)
    for column in range(neighbour_codes.shape[1]):
        totals[row_numbers, neighbour_codes[:, column]] += 1 if weights is None else weights[:, column]
    return totals


def vote(neighbour_codes: Any, n_classes: int, xp: Any, weights: Any | None = None) -> Any:
    """Majority (or most weighted) class code per row; ties go to the smallest class code."""
    return class_totals(neighbour_codes, n_classes, xp, weights).argmax(axis=1)


def class_probabilities(neighbour_codes: Any, n_classes: int, xp: Any, weights: Any | None = None) -> Any:
    """``predict_proba``: each class's share of the neighbours' weight (float64, rows sum to 1)."""
    totals = class_totals(neighbour_codes, n_classes, xp, weights).astype(xp.float64)
    return totals / totals.sum(axis=1, keepdims=True)


def neighbour_mean(neighbour_values: Any, xp: Any, weights: Any | None = None) -> Any:
    """The (weighted) mean of the neighbours' targets, in float64."""
    values = xp.asarray(neighbour_values, dtype=xp.float64)
    if weights is None:
        return values.mean(axis=1)
    return (values * weights).sum(axis=1) / weights.sum(axis=1)
