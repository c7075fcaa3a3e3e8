"""Batch scoring of files (``knnstream score``) and re-scoring of topic ranges (``knnstream replay``).

Both predict on the Dask workers that hold the model through the same
:class:`~stream.predict.plugin.ModelPlugin` as the streaming worker, so a record gets the
same prediction whichever way it is scored.
"""
