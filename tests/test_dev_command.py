"""`sanxiang dev` (what `make run` starts): everything comes up, serves a guide, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bff.platform.embedded import STATE_FILE, _alive
from tests.conftest import SERVICE_LOGS, free_port

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                child = int(entry.name)
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def run_dev(tmp_path: Path, env_overrides: dict[str, str]) -> None:
    api_port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        API_PORT=str(api_port),
        SANDBOX_PORT=str(sandbox_port),
        DATA_DIR=str(tmp_path),
        SANDBOX_CATALOGUE_SCALE="demo",
        **env_overrides,
    )
    log_path = tmp_path / "dev.log"
    SERVICE_LOGS.append(log_path)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bff.cli", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{api}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dev did not become ready"
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while "Sanxiang BFF is running" not in log_path.read_text():
            assert time.monotonic() < deadline, "dev printed no banner"
            time.sleep(0.2)
        banner = log_path.read_text()
        assert f"{api}/api/v1" in banner
        sample = banner.split("curl ", 1)[1].split()[0]
        response = httpx.get(sample, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["item"]["materials"]
        # The banner logged the demo resident in: its token works on a guarded route.
        token = banner.split("Bearer ", 1)[1].split("'", 1)[0]
        me = httpx.get(f"{api}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["level"] == 3
        children = descendants(proc.pid)
        assert len(children) >= 3  # sandbox, worker, API (and embedded servers when used)
        state_path = tmp_path / "embedded" / STATE_FILE
        servers: list[int] = []
        if state_path.exists():
            state = json.loads(state_path.read_text())
            servers = [int(state["pg_pid"]), int(state["redis_pid"])]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in children | set(servers)):
        assert time.monotonic() < deadline, "processes left running after Ctrl-C"
        time.sleep(0.2)
    assert not state_path.exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/healthz", timeout=1)


def test_dev_with_embedded_servers(tmp_path: Path) -> None:
    run_dev(tmp_path, {})


def test_dev_with_configured_servers(tmp_path: Path, services) -> None:
    run_dev(tmp_path, {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url})
