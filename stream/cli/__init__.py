"""The ``knnstream`` command line."""
