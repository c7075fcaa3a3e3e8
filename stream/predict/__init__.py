"""Predict: the KNN model, its per-worker loading, and batch prediction on Dask.

``model`` is the served model, ``plugin`` loads it on every Dask worker, ``tasks`` score a part
there, ``distributed`` spreads batches over the workers, ``follow`` hot-reloads an alias,
``cluster`` starts or joins the Dask cluster (``interrupts``: its local workers leave Ctrl-C to
the process that started them), ``memory`` and ``gpu_memory`` keep it within memory, ``warm``
runs the serving path once as a model loads, ``index`` holds the neighbour searches (exact and
approximate, on both backends). Imports ``records`` and the package root; never ``source`` or ``sink``.
"""
