"""Kafka security settings reach librdkafka, and the SASL password never shows."""

from __future__ import annotations

import io
import json
import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from stream.logs import JsonFormatter
from stream.settings import ServeSettings
from stream.sink.kafka import producer_config
from stream.source.consumer import consumer_config

PASSWORD = "pw-7f3a9c1e-never-print-me"
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: the clients never reach a broker


def _ca_file(tmp_path: Path) -> str:
    """A CA bundle librdkafka can load: the system's, or a self-signed one made with openssl."""
    system = ssl.get_default_verify_paths().cafile
    if system and Path(system).is_file():
        return system
    openssl = shutil.which("openssl")
    assert openssl is not None, "need the system CA bundle or openssl to make a CA file"
    ca = tmp_path / "ca.pem"
    key = str(tmp_path / "ca.key")
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=knnstream-test"]
    subprocess.run([*command, "-keyout", key, "-out", str(ca)], check=True, capture_output=True)
    return str(ca)


@pytest.fixture
def secure_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServeSettings:
    """Settings from KNNSTREAM_* variables, as a Deployment's ConfigMap and Secret set them."""
    for name, value in {
        "KNNSTREAM_BOOTSTRAP_SERVERS": UNREACHABLE,
        "KNNSTREAM_SECURITY_PROTOCOL": "SASL_SSL",
        "KNNSTREAM_SASL_MECHANISM": "SCRAM-SHA-512",
        "KNNSTREAM_SASL_USERNAME": "knnstream",
        "KNNSTREAM_SASL_PASSWORD": PASSWORD,
        "KNNSTREAM_SSL_CA_LOCATION": _ca_file(tmp_path),
        "KNNSTREAM_MODEL": "blobs@production",
    }.items():
        monkeypatch.setenv(name, value)
    return ServeSettings()


def test_security_settings_reach_consumer_and_producer_config(secure_settings: ServeSettings) -> None:
    expected = {
        "bootstrap.servers": UNREACHABLE,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "knnstream",
        "sasl.password": PASSWORD,
        "ssl.ca.location": secure_settings.ssl_ca_location,
    }
    for config in (consumer_config(secure_settings), producer_config(secure_settings)):
        assert {key: config.get(key) for key in expected} == expected


def test_plaintext_default_sets_no_security_keys() -> None:
    config = consumer_config(ServeSettings(model="m@production", bootstrap_servers=UNREACHABLE))
    assert not [key for key in config if key.startswith(("security.", "sasl.", "ssl."))]


def test_password_never_in_repr_str_or_dumps(secure_settings: ServeSettings) -> None:
    assert secure_settings.sasl_password is not None
    assert secure_settings.sasl_password.get_secret_value() == PASSWORD
    for shown in (
        repr(secure_settings),
        str(secure_settings),
        f"{secure_settings}",
        secure_settings.model_dump_json(),
        json.dumps(secure_settings.model_dump(), default=str),
    ):
        assert PASSWORD not in shown


def test_librdkafka_accepts_the_keys_and_logs_no_password(secure_settings: ServeSettings) -> None:
    """Real clients built from the configs (a wrong key would raise); librdkafka's own debug
    dump of its configuration goes through the JSON log formatter without the password."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("knnstream.test.settings")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        log.info("starting with %r", secure_settings)
        consumer = Consumer({**consumer_config(secure_settings), "debug": "conf,security"}, logger=log)
        producer = Producer({**producer_config(secure_settings), "debug": "conf,security"}, logger=log)
        consumer.poll(0.5)
        producer.poll(0.5)
        consumer.close()
        producer.flush(0)
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    messages = "\n".join(line["message"] for line in lines)
    assert PASSWORD not in stream.getvalue()
    assert messages.count("sasl.password = [redacted]") == 2, "both clients were given a password"
    assert "security.protocol = sasl_ssl" in messages
