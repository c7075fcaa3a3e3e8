"""Plugins shared by the consumers of one Dask cluster, on a real local cluster: a model version
two consumers serve is loaded once, and a version one of them stops serving stays loaded for the
other until it moves on too (a hot reload of several consumers, one after the other)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from distributed import Client, WorkerPlugin

from stream.predict.cluster import close_client, start_client
from stream.predict.distributed import DaskPredictor
from stream.predict.plugin import ModelPlugin, plugin_name
from stream.predict.shared import SharedPlugins, fingerprint
from tests.helpers import blobs
from tests.stream.guarantees.scenario import MODEL_NAME, publish_model

pytestmark = pytest.mark.parametrize("backend", ["cpu"])


class CountingPlugin(WorkerPlugin):
    """Counts its set-ups on each worker."""

    name = "knnstream-test-counting"

    def setup(self, worker: Any) -> None:
        worker.data.setdefault("knnstream-test-setups", 0)
        worker.data["knnstream-test-setups"] += 1


def _setups(dask_worker: Any = None) -> int:
    return int(dask_worker.data.get("knnstream-test-setups", 0))


def _plugin_instances(name: str, dask_worker: Any = None) -> int:
    plugin = dask_worker.plugins.get(name)
    return 0 if plugin is None else id(plugin)


def test_a_plugin_of_the_same_fingerprint_is_set_up_once_and_another_replaces_it(backend: str) -> None:
    first = start_client("cpu", None, 1)
    second = Client(first.scheduler_info()["address"], set_as_default=False)
    try:
        made_from = fingerprint({"config": 1})
        assert SharedPlugins(first).register(CountingPlugin(), made_from) is True
        assert SharedPlugins(second).register(CountingPlugin(), made_from) is False
        assert list(first.run(_setups).values()) == [1]
        assert SharedPlugins(second).register(CountingPlugin(), fingerprint({"config": 2})) is True
        assert list(first.run(_setups).values()) == [2]
    finally:
        second.close()
        close_client(first)


def test_two_consumers_load_a_version_once_and_switch_one_after_the_other(tmp_store: str, backend: str) -> None:
    old = publish_model(tmp_store, rows=400, seed=1).version
    new = publish_model(tmp_store, rows=400, seed=2).version
    first_client = start_client("cpu", None, 1)
    second_client = Client(first_client.scheduler_info()["address"], set_as_default=False)
    queries = blobs(50, seed=3)[0].astype(np.float32)
    try:
        first, second = DaskPredictor(first_client, "cpu"), DaskPredictor(second_client, "cpu")
        first.load(ModelPlugin(tmp_store, MODEL_NAME, old, "cpu"))
        loaded = first_client.run(_plugin_instances, plugin_name(old))
        second.load(ModelPlugin(tmp_store, MODEL_NAME, old, "cpu"))
        assert first_client.run(_plugin_instances, plugin_name(old)) == loaded, "not loaded a second time"
        first.activate(old)
        second.activate(old)

        first.load(ModelPlugin(tmp_store, MODEL_NAME, new, "cpu"))
        first.activate(new)  # the first consumer moves on: the second still serves the old version
        assert second.predict(queries).version == old
        assert first.predict(queries).version == new
        assert all(first_client.run(_plugin_instances, plugin_name(old)).values())

        second.load(ModelPlugin(tmp_store, MODEL_NAME, new, "cpu"))
        second.activate(new)  # the last one to serve it: the old version is unloaded
        assert second.predict(queries).version == new
        assert not any(first_client.run(_plugin_instances, plugin_name(old)).values())
    finally:
        second_client.close()
        close_client(first_client)


def test_a_consumer_gone_without_releasing_does_not_keep_a_version_loaded(tmp_store: str, backend: str) -> None:
    version = publish_model(tmp_store, rows=400).version
    client = start_client("cpu", None, 1)
    gone = Client(client.scheduler_info()["address"], set_as_default=False)
    try:
        name = plugin_name(version)
        SharedPlugins(gone).register(ModelPlugin(tmp_store, MODEL_NAME, version, "cpu"), "made-from", hold=True)
        gone.close()  # it held the version, and never released it
        plugins = SharedPlugins(client)
        plugins.register(ModelPlugin(tmp_store, MODEL_NAME, version, "cpu"), "made-from", hold=True)
        assert plugins.release(name) is True
        assert not any(client.run(_plugin_instances, name).values())
    finally:
        close_client(client)
