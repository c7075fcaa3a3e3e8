"""Ctrl-C in a terminal reaches the whole process group, the local Dask workers too: they ignore it.

The process that started the local cluster stops on SIGINT as on SIGTERM (the batch in flight
finished and committed) and then closes its workers itself; a worker killed by the interrupt
first would fail that batch instead. This module is the workers' Dask *preload*
(:data:`WORKER_PRELOAD`), run in each worker process as it starts, before it joins the
scheduler; a WorkerPlugin would come only once the client registers it, and the nanny's
replacement of a lost worker gets the preload too.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

WORKER_PRELOAD = __name__


def dask_setup(worker: Any) -> None:
    """Distributed's preload hook: ignore SIGINT in this worker process."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("Dask worker %s starts off the main thread: it keeps the default SIGINT handling", worker)
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
