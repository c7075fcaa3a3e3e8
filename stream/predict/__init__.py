"""Predict: the KNN model, its per-worker loading, and batch prediction on Dask.

``model`` is the served model, ``plugin`` loads it on every Dask worker, ``tasks`` score a part
there, ``distributed`` spreads batches over the workers, ``follow`` hot-reloads an alias,
``cluster`` starts or joins the Dask cluster, ``memory`` and ``gpu_memory`` keep it within
memory, ``index`` holds the neighbour searches (exact and approximate, on both backends).
Imports ``records`` and the package root; never ``source`` or ``sink``.
"""
