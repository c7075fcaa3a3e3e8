"""Demo and load generator: ``knnstream demo`` and ``knnstream produce``.

``run`` is the demo (a local broker, a trained model, records streamed through a worker),
``produce`` the records and their sending, ``produce_command`` the ``produce`` command and its
checks, ``files`` the records of ``--data``, ``kafka_admin`` the local broker and throwaway topics,
``local_worker`` a ``knnstream serve`` started as a child process and scraped. Imports ``train``
and the package root; the stages never import it.
"""
