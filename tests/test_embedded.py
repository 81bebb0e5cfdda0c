"""Embedded PostgreSQL/Redis: started from wheels, and never left running — even after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bff.platform.embedded import STATE_FILE, _alive

pytestmark = pytest.mark.slow

CHILD = """
import sys, time
from pathlib import Path
from bff.platform.embedded import EmbeddedServers
servers = EmbeddedServers(Path(sys.argv[1]))
db, redis = servers.start()
print(db, redis, flush=True)
time.sleep(600)
"""


def start_owner(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "embedded servers did not start"
    state = json.loads((data_dir / STATE_FILE).read_text())
    assert state["owner_pid"] == proc.pid
    return proc, state


def wait_gone(pids: list[int], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def watchdog_pids(state_path: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "bff.platform.embedded" in cmd and str(state_path) in cmd:
                found.append(int(entry.name))
    return found


def test_kill_9_of_the_owner_leaves_nothing_running(tmp_path: Path) -> None:
    proc, state = start_owner(tmp_path)
    servers = [int(state["pg_pid"]), int(state["redis_pid"])]  # type: ignore[arg-type]
    assert all(_alive(pid) for pid in servers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wait_gone(servers), "the watchdog did not stop the servers of a killed owner"
    deadline = time.monotonic() + 5
    while (tmp_path / STATE_FILE).exists():  # removed just after the servers stop
        assert time.monotonic() < deadline, "the watchdog left its state file behind"
        time.sleep(0.05)
    assert wait_gone(watchdog_pids(tmp_path / STATE_FILE), 5)


def test_next_start_cleans_up_what_a_crash_left(tmp_path: Path) -> None:
    proc, state = start_owner(tmp_path)
    servers = [int(state["pg_pid"]), int(state["redis_pid"])]  # type: ignore[arg-type]
    # Kill the watchdog first, then the owner: as if the whole session had been killed.
    for pid in watchdog_pids(tmp_path / STATE_FILE):
        os.kill(pid, signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert all(_alive(pid) for pid in servers), "servers should have survived their owner here"
    second, new_state = start_owner(tmp_path)
    try:
        assert wait_gone(servers), "the next start did not stop the stale servers"
        assert new_state["pg_pid"] != state["pg_pid"]
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait()
        assert wait_gone([int(new_state["pg_pid"]), int(new_state["redis_pid"])])  # type: ignore[arg-type]


def test_a_second_owner_of_a_live_data_dir_is_refused(tmp_path: Path) -> None:
    proc, state = start_owner(tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "belong to running process" in result.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wait_gone([int(state["pg_pid"]), int(state["redis_pid"])])  # type: ignore[arg-type]
