"""Bench: ``knnstream bench`` and its soak, measured against a real broker.

``run`` measures raw predict throughput, then end to end through one serve (or replicas) and
prints the ratios; ``load``, ``backlog``, ``raw``, ``replicas`` and ``soak`` are its phases,
``progress``, ``gpus`` and ``sampling`` its samplers, ``report`` its table. Imports the stages,
``serve`` only through worker processes, and ``demo``'s broker, worker-process and load helpers.
"""
