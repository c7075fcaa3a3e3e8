"""Sink: producing predictions and dead letters to Kafka, then committing offsets.

``kafka`` is the producer, ``workers`` the producer each Dask worker holds (and its scoring task
that produces), ``commit`` the commit order, written down once. Imports ``records``,
``predict``'s worker tasks, ``batching`` and the package root.
"""
