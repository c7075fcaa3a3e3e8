"""Sink: producing predictions and dead letters to Kafka, then committing offsets.

``kafka`` is the producer, ``workers`` the producer each Dask worker holds (and its scoring task
that produces), ``commit`` the commit order, written down once; ``admin`` the topics (created by
``knnstream topics create`` and ``serve --create-topics``, checked by ``produce``). Imports ``records``,
``predict``'s worker tasks, ``batching`` and the package root.
"""
