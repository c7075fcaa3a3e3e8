"""The benchmark's settings refuse replicas that cannot share the workers, the partitions, the
Dask cluster or the metrics ports, and say so in terms of the flags."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from stream.cli.flags import add_settings_flags, build_settings
from stream.errors import ConfigurationError
from stream.settings import BenchSettings


def test_replicas_share_the_workers_evenly() -> None:
    assert BenchSettings(workers=4, replicas=2, partitions=8).replicas == 2
    with pytest.raises(ValidationError, match="--workers 3 cannot be shared out evenly among --replicas 2"):
        BenchSettings(workers=3, replicas=2, partitions=8)


def test_no_more_replicas_than_partitions() -> None:
    with pytest.raises(ValidationError, match="--replicas 4 is more than --partitions 2"):
        BenchSettings(workers=4, replicas=4, partitions=2)


def test_a_soak_samples_one_replica_only() -> None:
    assert BenchSettings(soak_seconds=60).soak_seconds == 60
    with pytest.raises(ValidationError, match="use it with --replicas 1"):
        BenchSettings(workers=2, replicas=2, partitions=4, soak_seconds=60)


def test_replicas_start_clusters_of_their_own() -> None:
    assert BenchSettings(scheduler="tcp://scheduler:8786").scheduler == "tcp://scheduler:8786"
    with pytest.raises(ValidationError, match="leave --scheduler unset"):
        BenchSettings(workers=2, replicas=2, partitions=4, scheduler="tcp://scheduler:8786")


def test_each_replica_needs_a_metrics_port() -> None:
    assert BenchSettings(metrics_port=65534, workers=2, replicas=2, partitions=4).metrics_port == 65534
    with pytest.raises(ValidationError, match="--metrics-port 65535 leaves no port for each of --replicas 2"):
        BenchSettings(metrics_port=65535, workers=2, replicas=2, partitions=4)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        BenchSettings(metrics_port=0)


def test_a_rule_across_flags_reads_as_its_message_on_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, BenchSettings)
    args = parser.parse_args(["--workers", "3", "--replicas", "2", "--partitions", "8"])
    with pytest.raises(ConfigurationError) as raised:
        build_settings(BenchSettings, args)
    assert str(raised.value) == "--workers 3 cannot be shared out evenly among --replicas 2"


def test_consumers_need_partitions_a_metrics_port_each_and_no_soak() -> None:
    assert BenchSettings(consumers=2, partitions=4).consumers == 2
    with pytest.raises(ValidationError, match="--replicas 2 times --consumers 2 is more than --partitions 3"):
        BenchSettings(workers=2, replicas=2, consumers=2, partitions=3)
    with pytest.raises(ValidationError, match="use it with --replicas 1 and --consumers 1"):
        BenchSettings(consumers=2, soak_seconds=60)
    with pytest.raises(ValidationError, match="--metrics-port 65535 leaves no port for each of --replicas 1 times"):
        BenchSettings(metrics_port=65535, consumers=2)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        BenchSettings(consumers=0)
