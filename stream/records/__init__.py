"""Records: the codecs of the topics' values, shared by the source, the sink and the workers.

``decode`` checks and decodes feature records one by one (the dead-letter path), ``formats``
joins and splits a batch's values (JSON lines or float32 rows), ``parse`` turns a joined part
into ids and a feature matrix where it is scored, and ``encode`` writes predictions and dead
letters. Imports only the package root (settings, errors, the backend switch).
"""
