"""Search settings tuned against scikit-learn's exact neighbours: recall@k, the fastest setting
that reaches the target, and a target no setting reaches."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from stream.bench.data import correlated
from stream.predict.index import build_index
from stream.predict.index.base import Params
from stream.predict.index.cpu import FaissIndex
from stream.train.tuning import RecallNotReachedError, recall_at_k, tune

K = 5


def test_recall_counts_the_exact_neighbours_found_in_any_order() -> None:
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    assert recall_at_k(np.array([[2, 1, 0], [5, 4, 3]]), exact) == 1.0
    assert recall_at_k(np.array([[0, 9, 9], [3, 4, 8]]), exact) == pytest.approx(3 / 6)


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features, _ = correlated(20_500, 16, seed=5)
    index_rows, queries = features[500:], features[:500]
    exact = NearestNeighbors(n_neighbors=K, algorithm="brute").fit(index_rows).kneighbors(queries)[1]
    return index_rows, queries, exact


@pytest.mark.parametrize(("kind", "target"), [("ivf-flat", 0.99), ("hnsw", 0.99), ("ivf-pq", 0.95)])
def test_tuning_sets_a_setting_whose_recall_reaches_the_target(kind: str, target: float, problem: tuple) -> None:
    index_rows, queries, exact = problem
    index = build_index(kind, index_rows, "euclidean", "cpu")  # type: ignore[arg-type]
    tuned = tune(index, queries, exact, K, target)
    assert tuned.recall >= target
    assert index.spec.search == tuned.params  # the index searches with what was chosen
    assert recall_at_k(index.kneighbors(queries, K)[1], exact) == pytest.approx(tuned.recall)
    reaching = [trial for trial in tuned.trials if trial.recall >= target]
    assert tuned.params in [trial.params for trial in reaching]
    assert min(trial.seconds for trial in reaching) == next(t.seconds for t in reaching if t.params == tuned.params)
    assert tuned.trials[0].recall < target  # the cheapest setting was tried first, and fell short


class _OneProbeOnly(FaissIndex):
    """A real IVF-Flat index offered one setting only: one list probed of hundreds."""

    def search_grid(self, k: int) -> list[Params]:
        return [{"n_probes": 1}]


def test_a_target_no_setting_reaches_names_the_best_recall_and_the_flags(problem: tuple) -> None:
    index_rows, queries, exact = problem
    built = build_index("ivf-flat", index_rows, "euclidean", "cpu")
    assert isinstance(built, FaissIndex)
    index = _OneProbeOnly(built.spec, built._index)
    with pytest.raises(RecallNotReachedError) as caught:
        tune(index, queries, exact, K, 0.99)
    message = str(caught.value)
    assert "index ivf-flat reaches recall@5 0." in message and "at best (n_probes=1)" in message
    assert "below --min-recall 0.99; lower --min-recall or choose another --index" in message
    assert "\n" not in message
