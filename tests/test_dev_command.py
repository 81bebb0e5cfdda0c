"""`sanxiang dev` (what `make run` starts): everything comes up, serves a guide, and Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from auth import ratelimit
from bff.demo import DemoLoginFailed, demo_login
from bff.platform.embedded import STATE_FILE, _alive
from tests.conftest import SERVICE_LOGS, Services, free_port

pytestmark = pytest.mark.slow
LOGIN_LIMIT = 60  # AUTH_RATE_PER_IP given to dev in the refusal test


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


def run_dev(tmp_path: Path, env_overrides: dict[str, str], *, logged_in: bool = True) -> str:
    """Run `sanxiang dev`, check it serves and stops cleanly; returns the banner."""
    api_port, sandbox_port, bridge_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        API_PORT=str(api_port),
        SANDBOX_PORT=str(sandbox_port),
        DATA_DIR=str(tmp_path),
        SANDBOX_CATALOGUE_SCALE="demo",
        KIOSK_BRIDGE_URL=f"http://127.0.0.1:{bridge_port}",
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
        if logged_in:
            # The banner logged the demo resident in: its token works on a guarded route. When it
            # did not, the banner says why (status and problem code); show it.
            assert "Bearer " in banner, banner
            token = banner.split("Bearer ", 1)[1].split("'", 1)[0]
            me = httpx.get(f"{api}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert me.status_code == 200, me.text
            assert me.json()["level"] == 3
        # The kiosk demo: its page, the simulated bridge with a card in the reader, its key
        # registered (the bridge's signed login is accepted).
        bridge = f"http://127.0.0.1:{bridge_port}"
        assert f"{api}/kiosk/?bridge={bridge}" in banner, banner
        assert httpx.get(f"{api}/kiosk/", timeout=10).status_code == 200
        if logged_in:  # (where the per-IP login limit was filled on purpose, it answers 429)
            login = httpx.post(f"{bridge}/bridge/login", json={}, headers={"Origin": api}, timeout=10)
            assert login.status_code == 200 and login.json()["channel"] == "kiosk", login.text
        children = descendants(proc.pid)
        assert len(children) >= 4  # sandbox, worker, API, kiosk bridge (and embedded servers when used)
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
    return banner


def test_dev_with_embedded_servers(tmp_path: Path) -> None:
    run_dev(tmp_path, {})


def test_dev_with_configured_servers(tmp_path: Path, own_services: Services) -> None:
    # Its own database and Redis number: the per-IP login limit and the caches of the in-process
    # apps of earlier tests (same address, same minute) must not answer its demo login 429.
    run_dev(tmp_path, {"DATABASE_URL": own_services.database_url, "REDIS_URL": own_services.redis_url})


def test_dev_banner_says_why_the_demo_login_was_refused(tmp_path: Path, own_services: Services) -> None:
    """The flake's cause, on purpose: the per-IP login limit is already full when dev starts."""

    async def fill() -> None:
        redis = Redis.from_url(own_services.redis_url)
        try:
            for _ in range(LOGIN_LIMIT):
                await ratelimit.hit(redis, "auth:ip:127.0.0.1", LOGIN_LIMIT, 60)
        finally:
            await redis.aclose()

    asyncio.run(fill())
    banner = run_dev(
        tmp_path,
        {
            "DATABASE_URL": own_services.database_url,
            "REDIS_URL": own_services.redis_url,
            "AUTH_RATE_PER_IP": str(LOGIN_LIMIT),
            "AUTH_RATE_WINDOW_S": "60",
        },
        logged_in=False,
    )
    # Retry-After (about a minute) is longer than the demo login's budget: it says so at once.
    assert "demo login failed: POST /api/v1/auth/app/login answered 429 rate_limited, Retry-After" in banner
    assert "Bearer " not in banner


# --- the demo login's reasons and retries, against the sandbox's identity provider ------------
#
# The login endpoint is a scripted stand-in (a real HTTP server in this process) so that a 429 or
# 503 can be answered on demand; the authorization codes come from the real sandbox.


class ScriptedLogin:
    def __init__(self, answers: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.answers = answers
        self.codes: list[str] = []
        self.times: list[float] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                script.codes.append(body["code"])
                script.times.append(time.monotonic())
                status, headers, document = script.answers.pop(0) if script.answers else (500, {}, {})
                payload = json.dumps(document).encode()
                self.send_response(status)
                ctype = "application/problem+json" if status >= 400 else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedLogin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


TOKENS = {"accessToken": "at", "refreshToken": "rt", "expiresIn": 600}
LIMITED = {"type": "about:blank", "status": 429, "code": "rate_limited", "title": "Too many requests"}
UNAVAILABLE = {"status": 503, "code": "upstream_unavailable", "title": "unavailable"}


def test_demo_login_waits_out_a_rate_limit_with_a_fresh_code(sandbox_url: str) -> None:
    with ScriptedLogin([(429, {"Retry-After": "1"}, LIMITED), (200, {}, TOKENS)]) as api:
        assert demo_login(api.url, f"{sandbox_url}/idp", "sanxiang-bff", budget=10) == TOKENS
    assert len(api.codes) == 2 and api.codes[0] != api.codes[1]  # a code is never replayed
    assert api.times[1] - api.times[0] >= 1.0  # Retry-After was honoured


def test_demo_login_retries_503_then_gives_up_within_its_budget(sandbox_url: str) -> None:
    with ScriptedLogin([(503, {}, UNAVAILABLE)] * 20) as api:
        started = time.monotonic()
        with pytest.raises(DemoLoginFailed) as failed:
            demo_login(api.url, f"{sandbox_url}/idp", "sanxiang-bff", budget=2)
    assert time.monotonic() - started < 2.5
    assert len(api.codes) >= 2  # retried
    assert (failed.value.status, failed.value.code) == (503, "upstream_unavailable")
    assert "503 upstream_unavailable" in str(failed.value)


@pytest.mark.parametrize(
    ("status", "headers", "document", "reason"),
    [
        (429, {"Retry-After": "60"}, LIMITED, "429 rate_limited, Retry-After 60 s"),  # longer than the budget
        (429, {}, LIMITED, "429 rate_limited"),  # no Retry-After: nothing says when to come back
        (400, {}, {"status": 400, "code": "invalid_code"}, "400 invalid_code"),
        (401, {}, {"status": 401, "code": "login_failed"}, "401 login_failed"),
    ],
)
def test_demo_login_says_why_and_does_not_retry_what_will_not_change(
    sandbox_url: str, status: int, headers: dict[str, str], document: dict[str, Any], reason: str
) -> None:
    with ScriptedLogin([(status, headers, document), (200, {}, TOKENS)]) as api:
        started = time.monotonic()
        with pytest.raises(DemoLoginFailed) as failed:
            demo_login(api.url, f"{sandbox_url}/idp", "sanxiang-bff", budget=5)
    assert time.monotonic() - started < 1.0  # no pointless waiting
    assert len(api.codes) == 1
    assert (failed.value.status, failed.value.code) == (status, document["code"])
    assert f"POST /api/v1/auth/app/login answered {reason}" in str(failed.value)


def test_demo_login_names_an_unreachable_api(sandbox_url: str) -> None:
    port = free_port()
    with pytest.raises(DemoLoginFailed, match=f"cannot reach the API at http://127.0.0.1:{port}"):
        demo_login(f"http://127.0.0.1:{port}", f"{sandbox_url}/idp", "sanxiang-bff", budget=1)
