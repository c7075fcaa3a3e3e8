"""Serve: ``knnstream serve``'s wiring of source, batching, predict and sink.

``worker`` builds the clients and runs the consume loop, ``pipeline`` keeps batches in flight in
order and commits them, ``batch`` is what each stage does to one batch, ``stages`` their types,
``metrics`` the Prometheus metrics and health endpoint. May import every stage; nothing but the
CLI, the bench and the demo imports it.
"""
