"""knnstream: streaming K-nearest-neighbours predictions on Kafka.

A record's way through the package, one folder a stage:

- ``source``: consumed from the input topic (consumer, formats, bad-record breaker, lag);
- ``batching``: gathered into micro-batches;
- ``predict``: scored on the Dask workers that hold the model (model, plugins, tasks, memory);
- ``sink``: predictions and dead letters produced, then offsets committed (the commit order is
  written down once, in :mod:`stream.sink.commit`);
- ``records``: the record codecs both ends and the workers share (JSON and float32 parsing,
  prediction encoding).

``serve`` wires those stages into ``knnstream serve``; ``train``, ``backfill`` (score and
replay), ``bench`` and ``demo`` (the demo and the load generator) stand apart, and ``cli`` sits
on top. The modules at this root are what every layer shares: settings, errors, logs, the
backend switch and the heap's collection settings. Imports run one way: ``records`` imports
only this root; ``source``, ``batching``, ``predict`` and ``sink`` never import ``serve``,
``bench``, ``demo`` or ``cli``, and ``predict`` imports neither ``source`` nor ``sink``.
"""
