"""Source: consuming feature records from Kafka.

``kafka`` is the long-lived consumer (reads, pauses, rewinds, tracks what is in flight),
``consumer`` its configuration and message helpers, ``breaker`` the bad-record circuit breaker,
``lag`` the partitions' lag. Imports ``records``, ``batching`` and the package root only.
"""
