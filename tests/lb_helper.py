"""Replicas of the API behind a real HAProxy (Debian's `haproxy`) on loopback, for the scale-out tests.

HAProxy checks `/readyz` every 300 ms and takes a replica out after two failures, so a replica that
drains (SHUTDOWN_GRACE_S, 3 s here) is out of rotation well before it stops listening; a check may take
up to 2 s on a loaded machine without a healthy replica being taken out."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, start_process, stop_process, wait_http
from tests.test_journey_helpers import serve_env

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
GRACE_S = "3"


class Replicas:
    def __init__(self, services: Any, sandbox_url: str, count: int, **env: str) -> None:
        self.services = services
        self.sandbox_url = sandbox_url
        self.ports = [free_port() for _ in range(count)]
        self.env = env
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int) -> None:
        env = serve_env(
            self.services, self.sandbox_url, port, SHUTDOWN_GRACE_S=GRACE_S, LOG_LEVEL="WARNING", **self.env
        )
        proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, f"bff-replica-{port}")
        self.procs[port] = proc
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)

    def restart(self, port: int) -> None:
        """What a rolling restart does to one replica: SIGTERM, wait for it to drain and exit, start anew."""
        proc = self.procs[port]
        proc.terminate()
        proc.wait(60)
        self.start(port)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)


@contextlib.contextmanager
def haproxy(ports: list[int]) -> Iterator[str]:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed: `apt-get install haproxy` (.ci/run installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="sx-haproxy-"))
    listen = free_port()
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{port} check inter 300ms fall 2 rise 2" for i, port in enumerate(ports)
    )
    (workdir / "haproxy.cfg").write_text(
        f"""global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 5s
    timeout check 2s
    # A connection that could not be made (a replica that just stopped listening) goes to another.
    retries 2
    option redispatch
    retry-on conn-failure

frontend api
    bind 127.0.0.1:{listen}
    option forwardfor
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""
    )
    proc = subprocess.Popen(
        [HAPROXY, "-f", str(workdir / "haproxy.cfg"), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{listen}"
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, "haproxy exited"
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False
