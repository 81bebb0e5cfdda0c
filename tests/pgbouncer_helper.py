"""A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the session's PostgreSQL,
started and stopped by the tests that use it."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

BINARY = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """Yields `database_url` rewritten to go through a fresh PgBouncer (transaction pooling)."""
    if BINARY is None:
        pytest.skip("pgbouncer is not installed: `apt-get install pgbouncer` (.ci/run installs it)")
    target = urlsplit(database_url)
    if target.hostname not in {"127.0.0.1", "localhost"}:
        pytest.skip("PgBouncer tests need PostgreSQL over TCP on loopback (DATABASE_URL), not a socket")
    workdir = Path(tempfile.mkdtemp(prefix="sx-pgbouncer-"))
    port = _free_port()
    user = target.username or "postgres"
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={target.hostname} port={target.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "users.txt"}
admin_users = {user}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 8
ignore_startup_parameters = extra_float_digits
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""
    )
    args = [BINARY, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` user for PgBouncer to switch to")
        shutil.chown(workdir, "postgres")
        for name in os.listdir(workdir):
            shutil.chown(workdir / name, "postgres")
        args = [BINARY, "-u", "postgres", str(workdir / "pgbouncer.ini")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert proc.poll() is None, (workdir / "pgbouncer.log").read_text()
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.05)
        yield urlunsplit((target.scheme, f"{user}@127.0.0.1:{port}", target.path, target.query, ""))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
