"""Scaling, weights, vote, probabilities and means against scikit-learn's own functions."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neighbors._base import _get_weights
from sklearn.preprocessing import StandardScaler

from stream.predict.vote import (
    class_probabilities,
    fit_standard_scale,
    neighbour_distances,
    neighbour_mean,
    neighbour_weights,
    scaled,
    vote,
)


def test_the_standard_scale_is_standard_scalers_and_leaves_a_constant_column_alone() -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(3, 7, 500), np.full(500, 0.1), rng.uniform(0, 1e4, 500)])
    mean, scale = fit_standard_scale(rows)
    reference = StandardScaler().fit(rows)
    np.testing.assert_allclose(mean, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(scale, reference.scale_, rtol=1e-12)
    assert scale[1] == 1.0
    np.testing.assert_allclose(scaled(rows, mean, scale, np), reference.transform(rows), rtol=1e-6, atol=1e-6)
    assert scaled(rows, np.array([]), np.array([]), np).dtype == np.float32


def test_distance_weights_are_scikit_learns_also_at_distance_zero() -> None:
    distances = np.array([[0.5, 1.0, 4.0], [0.0, 0.0, 2.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        neighbour_weights(distances, "distance", np), _get_weights(distances.astype(np.float64), "distance")
    )
    np.testing.assert_array_equal(neighbour_weights(distances, "distance", np)[1], [1.0, 1.0, 0.0])
    assert neighbour_weights(distances, "uniform", np) is None


def test_the_vote_and_probabilities_are_scikit_learns_with_either_weights() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 3))
    labels = rng.integers(0, 4, 300)
    queries = np.vstack([rng.normal(size=(200, 3)), features[:20]])  # some at distance zero
    for weights in ("uniform", "distance"):
        reference = KNeighborsClassifier(n_neighbors=6, weights=weights).fit(features, labels)
        distances, indices = reference.kneighbors(queries)
        weighted = neighbour_weights(distances, weights, np)
        np.testing.assert_array_equal(vote(labels[indices], 4, np, weighted), reference.predict(queries))
        np.testing.assert_allclose(
            class_probabilities(labels[indices], 4, np, weighted), reference.predict_proba(queries), atol=1e-12
        )


def test_the_vote_breaks_ties_towards_the_smallest_class() -> None:
    codes = np.array([[2, 1, 2, 1], [0, 3, 3, 0], [1, 1, 1, 2]])
    np.testing.assert_array_equal(vote(codes, 4, np), [1, 0, 1])
    weights = np.array([[1.0, 1.0, 1.0, 1.0], [0.5, 1.0, 0.5, 1.0], [1.0, 1.0, 1.0, 3.5]])
    np.testing.assert_array_equal(vote(codes, 4, np, weights), [1, 0, 2])


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_the_mean_is_scikit_learns_in_float64(weights: str) -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 3))
    targets = 2.0**24 + rng.integers(0, 8, 300)
    reference = KNeighborsRegressor(n_neighbors=5, weights=weights).fit(features, targets)
    distances, indices = reference.kneighbors(features[:50] + 0.01)
    predicted = neighbour_mean(targets[indices], np, neighbour_weights(distances, weights, np))  # type: ignore[arg-type]
    np.testing.assert_allclose(predicted, reference.predict(features[:50] + 0.01), rtol=1e-15)
    assert neighbour_mean(np.array([[2.0**24 + 3]]), np)[0] == 16777219.0


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "minkowski", "cosine"])
def test_the_neighbour_distances_are_scikit_learns_and_zero_on_a_training_row(metric: str) -> None:
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(40, 6)).astype(np.float32)
    queries = np.vstack([rows[:5], rng.normal(size=(5, 6)).astype(np.float32)])
    chosen = rng.integers(0, len(rows), size=(len(queries), 4))
    chosen[:5, 0] = np.arange(5)  # the first queries sit on their first neighbour
    options = {"p": 3.0} if metric == "minkowski" else {}
    expected = np.take_along_axis(
        pairwise_distances(queries.astype(np.float64), rows.astype(np.float64), metric=metric, **options),
        chosen,
        axis=1,
    )
    distances = neighbour_distances(queries, rows[chosen], metric, 3.0, np)
    np.testing.assert_allclose(distances, expected, rtol=1e-6, atol=1e-7)
    assert (distances[:5, 0] == 0).all()
