"""Demo and load generator: ``knnstream demo`` and ``knnstream produce``.

``run`` is the demo (a local broker, a trained model, records streamed through a worker),
``produce`` the load generator, ``kafka_admin`` the local broker and topic helpers,
``local_worker`` a ``knnstream serve`` started as a child process and scraped. Imports ``train``
and the package root; the stages never import it.
"""
