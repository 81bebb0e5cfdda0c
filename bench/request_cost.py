"""What an ordinary screen costs: authenticated reads layer by layer, against a bare floor.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python -m bench.request_cost [--seconds 3] [--rounds 2] [--connections 32]

One invocation: a scratch database and the sandbox (`bench.scratch`), one resident logged in with a
case and three appointments, then for each configuration one API process (`uvicorn`, uvloop and
httptools as `sanxiang serve`, one worker) pinned to core 0 and `wrk` pinned to core 1 driving
`GET /api/v1/me`, `/api/v1/cases`, `/api/v1/appointments` in turn:

- `all layers on`: the app exactly as `create_app` builds it (edge with metrics and the access
  log at INFO, token check, deny-list, the route, its audit record);
- `no <layer>`: the same app with one layer replaced by a no-op in this bench's server process
  only (`_switch_off`); production code has no switch for any of them;
- `floor`: a bare Litestar app in this file running the routes' reads (the same SQL, same
  parameters) through a pool made by `bff.platform.db.create_pool`, returning the rows as JSON,
  no auth, no edge, no audit.

CPU per request is the API process's own CPU time (/proc utime + stime) over the requests served.
Rounds (`--rounds`) interleave the floor and every configuration; the table shows medians, and its
ratios are the median of each round's ratio to that round's floor.
Then each route is profiled (pyinstrument sampling every 0.5 ms, in a separate all-layers-on
process; its timings are not the table's): own time per function, and our functions inclusive, as
shares of the time spent serving requests. Short runs (`--seconds`, default 3): the machine is
shared, so read the ratios against the floor of the same invocation, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.measure import cpu_seconds, seed_screens, server_env, wrk_ms

REPO = Path(__file__).resolve().parents[1]
ROUTES = ("/api/v1/me", "/api/v1/cases", "/api/v1/appointments")
# (label, layers switched off, routes it is run for)
CONFIGS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("all layers on", (), ROUTES),
    ("no access log", ("accesslog",), ROUTES),
    ("no metrics", ("metrics",), ROUTES),
    ("no deny-list", ("denylist",), ROUTES),
    ("no audit record", ("audit",), ("/api/v1/me",)),
    ("no edge at all", ("edge",), ROUTES),
)


# --- the server side: runs in the pinned subprocess ------------------------------------------


def _switch_off(layers: set[str]) -> None:
    """Test-only wiring: replace a layer by a no-op in this process before the app is built."""
    if "accesslog" in layers:
        import bff.platform.edge as edge

        class _Silent:
            def info(self, *args: Any, **kwargs: Any) -> None:
                return None

        edge.log = _Silent()  # type: ignore[assignment]
    if "metrics" in layers:
        import bff.platform.edge as edge

        class _NoMetric:
            def labels(self, *args: Any) -> _NoMetric:
                return self

            def observe(self, *args: Any) -> None:
                return None

            def inc(self, *args: Any) -> None:
                return None

            def dec(self, *args: Any) -> None:
                return None

        edge.REQUEST_LATENCY = edge.RESPONSES = edge.IN_FLIGHT = _NoMetric()  # type: ignore[assignment]
    if "denylist" in layers:
        from auth import denylist

        async def never_denied(*args: Any, **kwargs: Any) -> bool:
            return False

        denylist.is_denied = never_denied  # type: ignore[assignment]
        if hasattr(denylist, "DenyCache"):  # the per-process memory (absent before issue 18)
            denylist.DenyCache.is_denied = never_denied  # type: ignore[method-assign]
    if "audit" in layers:
        from auth import audit

        async def no_record(*args: Any, **kwargs: Any) -> None:
            return None

        audit.record = no_record  # type: ignore[assignment]


def _floor_app(person_id: str) -> Any:
    """The same reads as the three routes, through the same pool factory, with nothing of ours."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from litestar import Litestar, get

    from bff.platform.db import create_pool
    from bff.platform.settings import load_settings

    settings = load_settings()
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state["pool"] = await create_pool(settings)
        try:
            yield
        finally:
            await state["pool"].close()

    def plain(row: asyncpg.Record) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in row.items()}

    @get("/api/v1/me")
    async def me() -> dict[str, Any]:
        row = await state["pool"].fetchrow("SELECT * FROM bff.persons WHERE id = $1", uuid.UUID(person_id))
        assert row is not None
        return {"personId": str(row["id"]), "level": row["level"]}

    @get("/api/v1/cases")
    async def cases() -> dict[str, Any]:
        pool = state["pool"]
        rows = await pool.fetch(
            """
            SELECT * FROM bff.cases
            WHERE person_id = $1 AND project_no IS NOT NULL
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
            ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            person_id,
            None,
            None,
            21,
        )
        items = []
        for row in rows:
            await pool.fetch(
                "SELECT case_seq, type, occurred_at, data FROM bff.case_events WHERE case_id = $1 ORDER BY case_seq",
                row["id"],
            )
            await pool.fetchrow("SELECT id, level, created_at FROM bff.ratings WHERE case_id = $1", row["id"])
            await pool.fetch(
                "SELECT type, data FROM bff.case_events WHERE case_id = $1 AND type LIKE 'supplement_%' ORDER BY case_seq",
                row["id"],
            )
            items.append({k: v for k, v in plain(row).items() if k not in ("form", "materials")})
        return {"items": items, "nextCursor": None}

    @get("/api/v1/appointments")
    async def appointments() -> dict[str, Any]:
        rows = await state["pool"].fetch(
            """
            SELECT a.*, (SELECT n.id FROM bff.appointments n
                         WHERE n.rescheduled_from = a.id AND n.status <> 'failed'
                         ORDER BY n.created_at DESC LIMIT 1) AS rescheduled_to
            FROM bff.appointments a
            WHERE a.person_id = $1 AND a.status <> 'failed'
              AND ($5::text IS NULL OR a.status = $5)
              AND ($2::timestamptz IS NULL OR (a.starts_at, a.id) > ($2, $3))
            ORDER BY a.starts_at, a.id LIMIT $4
            """,
            person_id,
            None,
            None,
            21,
            None,
        )
        return {"items": [plain(r) for r in rows], "nextCursor": None}

    @get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(
        route_handlers=[me, cases, appointments, readyz], lifespan=[lifespan], openapi_config=None
    )


def serve(mode: str, layers: set[str], profile: str | None) -> None:
    import uvicorn

    from bff.platform.server import ProblemHttpToolsProtocol
    from bff.platform.settings import load_settings

    if mode == "floor":
        app = _floor_app(os.environ["BENCH_PERSON"])
    else:
        from bff.app import create_app

        _switch_off(layers)
        app = create_app(load_settings())
        if "edge" in layers:
            app.asgi_handler = app.asgi_handler.app  # type: ignore[attr-defined]
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")

        def dump() -> None:
            # In the lifespan's shutdown: uvicorn re-raises SIGTERM once it has stopped.
            import json

            def tree(frame: Any) -> dict[str, Any]:
                return {
                    "function": frame.function,
                    "file_path": frame.file_path or "",
                    "line_no": frame.line_no,
                    "time": frame.time,
                    "children": [tree(c) for c in frame.children],
                }

            root = profiler.stop().root_frame(trim_stem=False)
            Path(profile).write_text(json.dumps({"root_frame": tree(root) if root else {}}))

        app.on_shutdown.append(dump)
        # Started by the driver once the process is warm (pool full, imports done, caches hot).
        signal.signal(signal.SIGUSR1, lambda *_: profiler.start())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["API_PORT"]),
        loop="uvloop",
        http=ProblemHttpToolsProtocol,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )


# --- the driver -------------------------------------------------------------------------------


def wrk(url: str, token: str, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    assert done is not None, out
    requests, took = int(done.group(1)), wrk_ms(done.group(2)) / 1000
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": requests,
        "rate": requests / took,
        "p50": wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99": wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "bad": int(bad.group(1)) if bad else 0,
        "socket_errors": 1 if errors else 0,
    }


class Server:
    def __init__(self, env: dict[str, str], mode: str, layers: tuple[str, ...], profile: str | None = None):
        self.port = _free_port()
        args = ["taskset", "-c", "0", sys.executable, "-m", "bench.request_cost", "serve", mode]
        args += ["--off", ",".join(layers)] if layers else []
        args += ["--profile", profile] if profile else []
        self.log = tempfile.NamedTemporaryFile(prefix="sx-request-cost-", suffix=".log", delete=False)  # noqa: SIM115 - closed in __exit__
        # The access log goes where production sends it (a stream), here a file: its cost is counted.
        self.proc = subprocess.Popen(
            args, env=dict(env, API_PORT=str(self.port)), cwd=REPO, stdout=self.log, stderr=self.log
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            import time

            time.sleep(0.1)
        raise RuntimeError("server did not come up")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            print(f"server did not stop within 30 s; its log: {self.log.name}", file=sys.stderr)
            return
        self.log.close()
        os.unlink(self.log.name)


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()


async def _prepare(database_url: str, sandbox_url: str, redis_url: str) -> tuple[str, str]:
    """A resident logged in (app channel, level 3: cases need it), with one case and three appointments."""
    from bff.app import create_app
    from bff.platform.settings import Settings
    from tests.auth_helpers import login_resident
    from tests.conftest import running

    settings = Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        catalogue_url=f"{sandbox_url}/catalogue",
        wechat_url=f"{sandbox_url}/wechat",
        idp_url=f"{sandbox_url}/idp",
        auth_rate_per_ip=10**9,
        auth_access_ttl_s=600,
        log_level="WARNING",
    )
    app = create_app(settings, configure_logs=False)
    async with running(app):
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
            httpx.AsyncClient(base_url=sandbox_url) as sb,
        ):
            who = await login_resident(client, sb, channel="app", level=3)
    person = str(who["person_id"])
    await seed_screens(database_url, person)
    return str(who["access_token"]), person


def _profile_summary(path: str, top: int) -> str:
    """Own time per function over the samples taken while a request was being served (below the
    server's protocol callbacks), as a share of that time; and the same for our own code inclusive."""
    import json

    root = json.loads(Path(path).read_text())["root_frame"]
    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    served = 0.0

    def name(frame: dict[str, Any]) -> str:
        where = frame.get("file_path") or ""
        where = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", where.replace(str(REPO) + "/", ""))
        return f"{where}:{frame.get('line_no', 0)} {frame['function']}"

    def walk(frame: dict[str, Any], inside: bool, seen: frozenset[str]) -> None:
        nonlocal served
        key = name(frame)
        # A request's work: the server protocol's callbacks (parsing, writing) and the ASGI app.
        entering = not inside and (
            "protocols/http/httptools_impl.py" in key or key.startswith("bff/platform/edge.py")
        )
        inside = inside or entering
        if entering:
            served += frame["time"]
        # pyinstrument's synthetic "[self]"/"[await]" leaves are the frame's own time.
        children = [c for c in frame.get("children", []) if not c["function"].startswith("[")]
        if inside:
            child_time = sum(c["time"] for c in children)
            own[key] = own.get(key, 0.0) + max(0.0, frame["time"] - child_time)
            if key not in seen and re.match(r"(bff|auth|adapters)/", key):
                inclusive[key] = inclusive.get(key, 0.0) + frame["time"]
        for child in children:
            walk(child, inside, seen | {key})

    walk(root, False, frozenset())
    served = served or 1.0
    lines = [f"sampled time serving requests: {served:.2f} s", "", "| own time | share | function |"]
    lines.append("| --- | --- | --- |")
    for key, t in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {t * 1000:.0f} ms | {t / served:.1%} | `{key}` |")
    lines += ["", "| inclusive | share | our function |", "| --- | --- | --- |"]
    for key, t in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {t * 1000:.0f} ms | {t / served:.1%} | `{key}` |")
    return "\n".join(lines)


def run(seconds: float, connections: int, profile_seconds: float, top: int, rounds: int) -> None:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("needs `wrk` and `taskset` (apt-get install wrk util-linux)")
    from bench.scratch import scratch

    admin_url = os.environ["DATABASE_URL"]
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")

    async def setup_and_drive() -> None:
        async with scratch(admin_url) as (database_url, sandbox_url):
            token, person = await _prepare(database_url, sandbox_url, redis_url)
            env = server_env(
                database_url,
                redis_url,
                sandbox_url,
                BENCH_PERSON=person,
            )
            await asyncio.to_thread(_drive, env, token, seconds, connections, profile_seconds, top, rounds)

    asyncio.run(setup_and_drive())


def _drive(
    env: dict[str, str],
    token: str,
    seconds: float,
    connections: int,
    profile_seconds: float,
    top: int,
    rounds: int,
) -> None:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}

    def measure(label: str, server: Server, routes: tuple[str, ...]) -> None:
        for route in routes:
            wrk(server.url + route, token, 1, connections)  # warm: statement caches, first verification
            before = cpu_seconds(server.proc.pid)
            row = wrk(server.url + route, token, seconds, connections)
            row["cpu_ms"] = (cpu_seconds(server.proc.pid) - before) / max(1, row["requests"]) * 1000
            results.setdefault((label, route), []).append(row)

    load_before = os.getloadavg()[0]
    # Rounds interleave the floor and every configuration, so a neighbour's burst on the shared
    # machine lands on one round of each, not on one configuration; the table shows medians.
    for _ in range(rounds):
        with Server(env, "floor", ()) as floor:
            measure("floor", floor, ROUTES)
        for label, layers, routes in CONFIGS:
            with Server(env, "app", layers) as server:
                measure(label, server, routes)
    load_after = os.getloadavg()[0]

    def median(label: str, route: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(label, route)])

    print(
        f"\n{connections} connections, {seconds:g} s per row, {rounds} rounds (medians); API pinned to "
        f"core 0, wrk to core 1; load average {load_before:.1f} before, {load_after:.1f} after\n"
    )
    print(
        "| route | configuration | req/s | × floor | CPU ms/request | × floor CPU | p50 ms | p99 ms | non-2xx |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for route in ROUTES:
        floor_rows = results[("floor", route)]
        for label in ["floor", *(c[0] for c in CONFIGS if route in c[2])]:
            rows = results[(label, route)]
            ratio = statistics.median(r["rate"] / f["rate"] for r, f in zip(rows, floor_rows, strict=True))
            cpu_ratio = statistics.median(
                r["cpu_ms"] / f["cpu_ms"] for r, f in zip(rows, floor_rows, strict=True)
            )
            print(
                f"| {route.removeprefix('/api/v1')} | {label} | {median(label, route, 'rate'):,.0f} | "
                f"{ratio:.2f} | {median(label, route, 'cpu_ms'):.3f} | {cpu_ratio:.2f} | "
                f"{median(label, route, 'p50'):.1f} | {median(label, route, 'p99'):.1f} | "
                f"{sum(int(r['bad']) for r in rows)} |"
            )
    if profile_seconds <= 0:
        return
    for route in ROUTES:
        path = tempfile.mktemp(prefix="sx-request-cost-", suffix=".json")
        with Server(env, "app", (), profile=path) as server:
            wrk(server.url + route, token, 1, connections)
            server.proc.send_signal(signal.SIGUSR1)
            wrk(server.url + route, token, profile_seconds, connections)
        print(f"\n### Profile, {route} (all layers on, pyinstrument, top {top})\n")
        print(_profile_summary(path, top))
        os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.request_cost")
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve", help="(internal) the pinned server process")
    srv.add_argument("mode", choices=("app", "floor"))
    srv.add_argument("--off", default="")
    srv.add_argument("--profile", default=None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per route and configuration")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile-seconds", type=float, default=3.0, help="0: no profile")
    parser.add_argument("--top", type=int, default=20, help="profile entries per route")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the table shows medians")
    args = parser.parse_args()
    if args.command == "serve":
        sys.path.insert(0, str(REPO))
        serve(args.mode, {x for x in args.off.split(",") if x}, args.profile)
    else:
        run(args.seconds, args.connections, args.profile_seconds, args.top, args.rounds)


if __name__ == "__main__":
    main()
