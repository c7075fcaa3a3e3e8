"""Predict: the KNN model, its per-worker loading, and batch prediction on Dask."""
