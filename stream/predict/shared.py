"""Worker plugins shared by the serving consumers of one Dask cluster.

A worker plugin belongs to the cluster, not to the client that registered it: several serving
consumers on one cluster (``knnstream serve --consumers N``, or serves given one ``--scheduler``)
would each register the same model version, and the scheduler would set it up again on every
worker each time (the model read, verified and warmed up N times, a worker's producer closed
under another consumer's batch); and a version one consumer stops serving would be unloaded
under the others still serving it. So, with the bookkeeping in the scheduler's metadata:

- a plugin is registered once per cluster: the fingerprint of what it was made from is kept
  with its name, and registering one of the same name and fingerprint again does nothing (a
  different fingerprint replaces it, as a plain registration does);
- each consumer (its Dask client) lists the plugins it holds (the model versions it serves);
  releasing one unregisters it only when no other connected client holds it;
- registrations and releases take turns under one Dask lock, so a registration that finds the
  plugin there returns only once the first one has set it up on every worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from distributed import Client, Lock, WorkerPlugin

log = logging.getLogger(__name__)
LOCK_NAME = "knnstream-plugins"
METADATA_ROOT = "knnstream-plugins"


def fingerprint(made_from: Mapping[str, Any]) -> str:
    """A digest of what a plugin is made from (values that are not JSON count by their type)."""
    text = json.dumps(made_from, sort_keys=True, default=lambda value: type(value).__qualname__)
    return hashlib.sha256(text.encode()).hexdigest()


class SharedPlugins:
    """One consumer's side of the cluster's shared plugins (see the module's docstring)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = Lock(LOCK_NAME, scheduler_rpc=client.scheduler, loop=client.loop)
        self._held: set[str] = set()

    def register(self, plugin: WorkerPlugin, made_from: str, hold: bool = False) -> bool:
        """Register ``plugin`` unless the cluster has it from the same ``made_from`` (a
        :func:`fingerprint`); ``hold``: this consumer holds it until :meth:`release`. Whether it
        was set up now; raises what the registration raised."""
        name = str(plugin.name)  # type: ignore[attr-defined]  # every knnstream plugin has one
        with self._lock:
            if hold:
                self._hold(name)  # before the check: a release by another consumer now keeps it
            if self._client.get_metadata([METADATA_ROOT, "made-from", name], None) == made_from:
                return False
            self._client.set_metadata([METADATA_ROOT, "made-from", name], None)  # a failed setup leaves none
            self._client.register_plugin(plugin)
            self._client.set_metadata([METADATA_ROOT, "made-from", name], made_from)
            return True

    def release(self, name: str) -> bool:
        """This consumer no longer holds ``name``: unregister it from the cluster unless another
        connected client holds it. Whether it was unregistered."""
        with self._lock:
            self._held.discard(name)
            self._publish_held()
            holders = self._holders(name)
            if holders:
                log.info("plugin %s stays on the Dask workers: %d other consumer(s) hold it", name, len(holders))
                return False
            self._client.set_metadata([METADATA_ROOT, "made-from", name], None)
            try:
                self._client.unregister_worker_plugin(name)
            except (ValueError, KeyError) as exc:
                log.debug("plugin %s was not registered: %s", name, exc)
            return True

    def _hold(self, name: str) -> None:
        self._held.add(name)
        self._publish_held()

    def _publish_held(self) -> None:
        self._client.set_metadata([METADATA_ROOT, "held-by", self._client.id], sorted(self._held))

    def _holders(self, name: str) -> list[str]:
        """The other connected clients that hold ``name`` (a client gone without releasing does not count)."""
        held_by: dict[str, list[str]] = self._client.get_metadata([METADATA_ROOT, "held-by"], {})
        connected = set(self._client.run_on_scheduler(_connected_clients))
        others = connected - {self._client.id}
        return sorted(client for client, names in held_by.items() if client in others and name in names)


def _connected_clients(dask_scheduler: Any) -> list[str]:
    """``run_on_scheduler``: the ids of the clients connected to the scheduler."""
    return list(dask_scheduler.clients)
