"""The install scripts parse, and install-prometheus.sh does nothing once Prometheus is there."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, require_binary

SCRIPTS = [DEPLOY / "install-prometheus.sh", DEPLOY / "compose" / "install-compose-plugin.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_install_prometheus_is_a_fast_no_op_when_installed(tmp_path: Path) -> None:
    require_binary("promtool")
    require_binary("prometheus")
    calls = tmp_path / "calls"
    for tool in ("apt-get", "apt-cache", "sudo"):  # any package-manager call would be recorded
        fake = tmp_path / tool
        fake.write_text(f'#!/bin/sh\necho {tool} "$@" >> {calls}\nexit 1\n')
        fake.chmod(0o755)
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(DEPLOY / "install-prometheus.sh")],
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not calls.exists(), calls.read_text()
    assert time.monotonic() - started < 5
