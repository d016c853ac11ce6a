"""The README's run command: a fresh instance comes up ready, with a working demo admin key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.parametrize("redis_mode", ["local-server", "in-process"])
def test_up_serves_readyz_and_the_demo_key(tmp_path, redis_mode):
    if redis_mode == "local-server" and shutil.which("redis-server") is None:
        pytest.fail("redis-server must be installed for the quick start test")
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "CLINICBRIDGE_INSTANCE_PATH": str(tmp_path),
        "HOME": str(tmp_path),
    }
    if redis_mode == "in-process":
        env["REDIS_URL"] = "memory://"
    from tests.support.redis_server import free_port

    result = subprocess.run(
        [sys.executable, "-m", "widget_server.cli.entry", "up", "--check", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "readiness:" in result.stdout and "-> ready" in result.stdout
    assert "check passed" in result.stdout
    assert "admin key:   cb_" in result.stdout
    assert "/static/widget/demo/#key=cb_" in result.stdout  # the demo panel, served (checked by --check)
    assert (tmp_path / "clinicbridge.sqlite3").exists()
