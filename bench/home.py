"""我的待办 (`GET /api/v1/home`) against a floor making the same upstream calls and SQL reads.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python -m bench.home [--seconds 3]

One invocation: a scratch database and the sandbox (`bench.scratch`), the catalogue mirrored, one
resident logged in (app, L3) with three appointments, a case and an ID card 60 days from expiry in
the e-licence library (so home has a renewal to-do: the library, then the booking system's
calendar for the renewal item's hall). Two server processes, both `uvicorn` with uvloop and
httptools as `sanxiang serve`, pinned to core 0, driven in turn by `wrk` pinned to core 1:

- `app`: the app exactly as `create_app` builds it (edge with metrics and access log, token check,
  deny-list, breakers and retry budgets, the audit record, the Redis copies), with
  `HOME_FRESH_S=0` so every home asks the upstreams again (the default 30 s serves the renewals
  from a copy and asks nothing upstream; see bench/README.md);
- `floor`: a bare ASGI callable in this file: msgspec, one asyncpg pool (`bff.platform.db`'s
  factory), one aiohttp session, no auth, no edge, no audit, no Redis, no breaker; it runs the
  home service's reads plainly (the same SQL with the same parameters, the same upstream calls:
  the library's signed licence search, the booking system's 16 calendar days 4 at a time and the
  first bookable day again) and answers the same seven sections.

At 0 ms and 20 ms injected upstream latency (the sandbox's `/_control/faults/{upstream}`) and at 4
and 64 connections: req/s, CPU ms per request (the server process's own utime + stime from /proc),
p50/p99, the share of degraded answers (any section not `ok`) and non-2xx, upstream calls per
request (the sandbox's own request counters), and the ratios to the floor. Then an open-loop phase
against the app (a fixed arrival rate from this process's own aiohttp load generator on core 1) at
80 % and 200 % of the app's 64-connection rate: the share degraded, the share of 503s and how fast
they come. The machine is shared: read the ratios, all from the same invocation.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bench.measure import cpu_seconds, seed_screens, server_env, wrk_ms

REPO = Path(__file__).resolve().parents[1]
CHINA = timezone(timedelta(hours=8))
UPSTREAMS = ("cases", "booking", "courier", "elicence", "catalogue", "ratings", "wechatpay")
COUNTED = ("elicence", "booking")
CALENDAR_DAYS = 16  # bff.appointments.service: the calendar's days and how many are asked at a time
CALENDAR_CONCURRENCY = 4
# wrk: counts the answers with any section not `ok` (a section is the only object whose `status`
# is followed by `asOf`; items' statuses are followed by other fields).
LUA = """
degraded = 0
bad = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 return end
  for s in string.gmatch(body, '"status":"(%a+)","asOf"') do
    if s ~= "ok" then degraded = degraded + 1 return end
  end
end
function done(summary, latency, requests)
  local d, b = 0, 0
  for _, t in ipairs(threads) do d = d + t:get("degraded"); b = b + t:get("bad") end
  io.write(string.format("DEGRADED %d BAD %d\\n", d, b))
end
"""


# --- the floor: runs in the pinned subprocess -------------------------------------------------


def floor_app() -> Any:
    """The home service's reads, plainly: the same SQL and upstream calls, the same seven sections."""
    import aiohttp
    import msgspec

    from bff.platform.db import create_pool
    from bff.platform.settings import load_settings

    settings = load_settings()
    person = os.environ["BENCH_PERSON"]
    holder = os.environ["BENCH_HOLDER"]
    hall, item = os.environ["BENCH_HALL"], os.environ["BENCH_ITEM"]
    elicence = settings.elicence_url.rstrip("/")
    prefix = "/" + elicence.split("://", 1)[1].split("/", 1)[1]
    booking = settings.booking_url.rstrip("/")
    state: dict[str, Any] = {}

    def stamp() -> str:
        return datetime.now(CHINA).isoformat(timespec="seconds")

    def section(items: list[Any], total: int | None = None) -> dict[str, Any]:
        return {
            "status": "ok",
            "asOf": stamp(),
            "total": len(items) if total is None else total,
            "items": items[:5],
        }

    async def cases() -> dict[str, Any]:
        pool = state["pool"]
        rows = await pool.fetch(
            """
            SELECT * FROM bff.cases WHERE person_id = $1 AND project_no IS NOT NULL
            ORDER BY updated_at DESC, id DESC LIMIT $2
            """,
            person,
            50,
        )
        supplements, fees, ratings = [], [], []
        for row in rows:
            issued = await pool.fetchrow(
                """
                SELECT data FROM bff.case_events WHERE case_id = $1 AND type = 'fee_issued'
                ORDER BY case_seq DESC LIMIT 1
                """,
                row["id"],
            )
            if issued is not None:
                await pool.fetchval(
                    "SELECT 1 FROM bff.case_events WHERE case_id = $1 AND type = 'fee_paid' AND data ->> 'fee_id' = $2",
                    row["id"],
                    str(issued["data"]["fee_id"]),
                )
                fees.append({"caseId": str(row["id"])})
            rated = row["status"] == "rated" or (
                await pool.fetchrow(
                    "SELECT id, level, created_at FROM bff.ratings WHERE case_id = $1", row["id"]
                )
                is not None
            )
            events = await pool.fetch(
                "SELECT type, data FROM bff.case_events WHERE case_id = $1 AND type LIKE 'supplement_%' ORDER BY case_seq",
                row["id"],
            )
            if any(e["type"] == "supplement_requested" for e in events):
                supplements.append({"caseId": str(row["id"])})
            if row["status"] in ("concluded", "delivering", "delivered") and not rated:
                ratings.append({"caseId": str(row["id"])})
        return {"supplements": section(supplements), "fees": section(fees), "ratings": section(ratings)}

    async def appointments() -> dict[str, Any]:
        rows = await state["pool"].fetch(
            """
            SELECT * FROM bff.appointments
            WHERE person_id = $1 AND status IN ('pending', 'booked') AND ends_at > now()
            ORDER BY starts_at, id LIMIT $2
            """,
            person,
            50,
        )
        items = [
            {
                "id": str(r["id"]),
                "status": r["status"],
                "startsAt": r["starts_at"].isoformat(),
                "endsAt": r["ends_at"].isoformat(),
                "hallId": r["hall_id"],
                "ticketNo": r["ticket_no"],
            }
            for r in rows
        ]
        return {"appointments": section(items)}

    async def parcels() -> dict[str, Any]:
        rows = await state["pool"].fetch(
            """
            SELECT s.id, s.case_id, c.project_no, c.item_name, s.carrier, s.waybill_no, s.status,
                   s.hall_name, s.updated_at
            FROM bff.shipments s JOIN bff.cases c ON c.id = s.case_id
            WHERE s.person_id = $1 AND s.status IN ('requesting', 'created', 'picked_up', 'in_transit',
                                                     'out_for_delivery')
            ORDER BY s.updated_at DESC LIMIT $2
            """,
            person,
            50,
        )
        return {"parcels": section([{"id": str(r["id"]), "status": r["status"]} for r in rows])}

    async def day(session: aiohttp.ClientSession, on: date) -> list[dict[str, Any]]:
        async with session.get(
            f"{booking}/halls/{hall}/slots", params={"item": item, "date": on.isoformat()}
        ) as r:
            body = msgspec.json.decode(await r.read())
        return list(body.get("slots", [])) if r.status == 200 else []

    async def renewals() -> dict[str, Any]:
        await state["pool"].fetchrow("SELECT * FROM bff.persons WHERE id = $1", uuid.UUID(person))
        session: aiohttp.ClientSession = state["http"]
        raw = msgspec.json.encode({"holder_code": holder, "holder_type": "111"})
        ts = str(int(time.time()))
        message = f"{ts}.POST.{prefix}/v1/licences/search.".encode() + raw
        signature = (
            "sha256=" + hmac.new(settings.elicence_secret.encode(), message, hashlib.sha256).hexdigest()
        )
        headers = {
            "Content-Type": "application/json",
            "X-Elicence-Client-Id": settings.elicence_client_id,
            "X-Elicence-Timestamp": ts,
            "X-Elicence-Signature": signature,
        }
        async with session.post(f"{elicence}/v1/licences/search", data=raw, headers=headers) as r:
            found = msgspec.json.decode(await r.read())
        today = datetime.now(CHINA).date()
        todos = []
        for licence in found["licences"]:
            if licence.get("status") != "valid" or not licence.get("valid_to"):
                continue
            left = (date.fromisoformat(licence["valid_to"]) - today).days
            if not 0 <= left <= 90:
                continue
            gate = asyncio.Semaphore(CALENDAR_CONCURRENCY)

            async def one(on: date, gate: asyncio.Semaphore = gate) -> tuple[date, bool]:
                async with gate:
                    return on, any(s["available"] > 0 for s in await day(session, on))

            days = await asyncio.gather(
                *(one(today + timedelta(days=n)) for n in range(1, CALENDAR_DAYS + 1))
            )
            first = next((on for on, free in days if free), None)
            slot = None
            if first is not None:
                slot = next((s for s in await day(session, first) if s["available"] > 0), None)
            todos.append({"licenceId": licence["licence_id"], "daysLeft": left, "slot": slot})
        return {"renewals": section(todos)}

    async def messages() -> dict[str, Any]:
        count = await state["pool"].fetchval(
            "SELECT count(*) FROM bff.notifications WHERE person_id = $1 AND in_inbox AND read_at IS NULL",
            person,
        )
        return {"messages": {"status": "ok", "asOf": stamp(), "total": int(count)}}

    async def home() -> bytes:
        sections: dict[str, Any] = {}
        for part in await asyncio.gather(cases(), appointments(), parcels(), renewals(), messages()):
            sections.update(part)
        order = [n for n, s in sections.items() if s["total"] > 0]
        return msgspec.json.encode({"channel": "app", "order": order, "sections": sections})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["pool"] = await create_pool(settings)
                    connector = aiohttp.TCPConnector(limit=settings.upstream_max_in_flight, ttl_dns_cache=300)
                    state["http"] = aiohttp.ClientSession(connector=connector)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["http"].close()
                    await state["pool"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = await home() if scope["path"] == "/api/v1/home" else b'{"status":"ok"}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def serve(mode: str) -> None:
    import uvicorn

    from bff.platform.server import ProblemHttpToolsProtocol
    from bff.platform.settings import load_settings

    if mode == "floor":
        app = floor_app()
    else:
        from bff.app import create_app

        app = create_app(load_settings())
    profile = os.environ.get("BENCH_PROFILE")
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")

        def dump() -> None:  # in the lifespan's shutdown
            profiler.stop()
            Path(profile).write_text(profiler.output_text(unicode=False, show_all=False))

        app.on_shutdown.append(dump)  # type: ignore[union-attr]
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


def wrk(url: str, token: str, seconds: float, connections: int, script: str) -> dict[str, float]:
    ran = subprocess.run(
        [
            *("taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"),
            *("--latency", "--timeout", "10s", "-s", script, "-H", f"Authorization: Bearer {token}", url),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if ran.returncode != 0:
        raise RuntimeError(f"wrk failed: {ran.stdout} {ran.stderr}")
    out = ran.stdout
    done = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    counted = re.search(r"DEGRADED (\d+) BAD (\d+)", out)
    assert done is not None and counted is not None, out
    requests, took = int(done.group(1)), wrk_ms(done.group(2)) / 1000
    return {
        "requests": requests,
        "rate": requests / took,
        "p50": wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99": wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "degraded": int(counted.group(1)) / max(1, requests),
        "bad": int(counted.group(2)) / max(1, requests),
    }


class Server:
    def __init__(self, env: dict[str, str], mode: str, profile: str | None = None) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix=f"sx-bench-home-{mode}-", suffix=".log", delete=False)  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "bench.home", "serve", mode],
            env=dict(env, API_PORT=str(self.port), **({"BENCH_PROFILE": profile} if profile else {})),
            cwd=REPO,
            stdout=self.log,
            stderr=self.log,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    self._settle()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not come up")

    def _settle(self) -> None:
        """Ready is not idle: the app loads its search model in the background after it is ready;
        wait (20 s at most) until the process is quiet, or that load is billed to the first rows."""
        for _ in range(40):
            before = cpu_seconds(self.proc.pid)
            time.sleep(0.5)
            if cpu_seconds(self.proc.pid) - before < 0.05:
                return

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        os.unlink(self.log.name)


async def _prepare(database_url: str, sandbox_url: str, redis_url: str, renewal_due: bool) -> dict[str, str]:
    """The resident (app, L3) with three appointments, a case and an ID card (60 days from expiry
    with `renewal_due`, else 400); the renewal item and hall home settles on (for the floor)."""
    from bff.app import create_app
    from bff.platform.settings import Settings
    from tests.auth_helpers import login_resident
    from tests.conftest import running, sync_once
    from tests.test_sandbox_elicence import ID_CARD

    settings = Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        catalogue_url=f"{sandbox_url}/catalogue",
        wechat_url=f"{sandbox_url}/wechat",
        idp_url=f"{sandbox_url}/idp",
        elicence_url=f"{sandbox_url}/elicence",
        booking_url=f"{sandbox_url}/booking",
        cases_url=f"{sandbox_url}/cases",
        ratings_url=f"{sandbox_url}/ratings",
        courier_url=f"{sandbox_url}/courier",
        auth_rate_per_ip=10**9,
        auth_access_ttl_s=600,
        home_fresh_s=0,
        log_level="WARNING",
    )
    await sync_once(settings)
    app = create_app(settings, configure_logs=False)
    async with running(app):
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
            httpx.AsyncClient(base_url=sandbox_url) as sb,
        ):
            who = await login_resident(client, sb, channel="app", level=3)
            resident = who["resident"]
            made = await sb.post(
                "/_control/elicence/licences",
                json={
                    "type_code": ID_CARD,
                    "holder_code": resident["id_card_number"],
                    "holder_name": resident["name"],
                    "issuer": "ga",
                    "valid_to": (
                        datetime.now(CHINA).date() + timedelta(days=60 if renewal_due else 400)
                    ).isoformat(),
                },
            )
            assert made.status_code == 201, made.text
            person = str(who["person_id"])
            await seed_screens(database_url, person)
            home = await client.get(
                "/api/v1/home", headers={"Authorization": f"Bearer {who['access_token']}"}
            )
            assert home.status_code == 200, home.text
            renewals = home.json()["sections"]["renewals"]
            assert renewals["status"] == "ok" and len(renewals["items"]) == int(renewal_due), renewals
            renewal = renewals["items"][0] if renewal_due else {"hall": {"id": ""}, "item": {"code": ""}}
            assert not renewal_due or renewal["status"] == "ok", renewal
    return {
        "token": str(who["access_token"]),
        "person": person,
        "holder": resident["id_card_number"],
        "hall": renewal["hall"]["id"],
        "item": renewal["item"]["code"],
    }


def _calls(sandbox_url: str) -> dict[str, int]:
    return {u: int(httpx.get(f"{sandbox_url}/_control/requests/{u}").json()["count"]) for u in COUNTED}


def _latency(sandbox_url: str, ms: int) -> None:
    for name in UPSTREAMS:
        if ms:
            put = httpx.put(f"{sandbox_url}/_control/faults/{name}", json={"latencyMs": ms})
            assert put.status_code in (200, 201, 204), put.text
        else:
            httpx.delete(f"{sandbox_url}/_control/faults/{name}")


async def _open_loop(url: str, token: str, rate: float, seconds: float) -> dict[str, float]:
    """A fixed arrival rate (not a closed loop): requests are sent on schedule whatever is in flight."""
    import aiohttp
    import msgspec

    results: list[tuple[int, float, bool]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"}) as s:

        async def one() -> None:
            started = time.perf_counter()
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=15)) as r:
                    body = await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                results.append((0, time.perf_counter() - started, False))
                return
            took = time.perf_counter() - started
            degraded = False
            if status == 200:
                sections = msgspec.json.decode(body)["sections"]
                degraded = any(v["status"] != "ok" for v in sections.values())
            results.append((status, took, degraded))

        tasks = []
        began = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - began

    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    ok = [t for st, t, _ in results if st == 200]
    shed = [t for st, t, _ in results if st == 503]
    return {
        "sent": len(results),
        "offered": rate,
        "served": len(ok) / took,
        "degraded": sum(1 for st, _, d in results if st == 200 and d) / max(1, len(ok)),
        "shed": len(shed) / max(1, len(results)),
        "other": sum(1 for st, _, _ in results if st not in (200, 503)) / max(1, len(results)),
        "ok_p50": pct(ok, 0.5),
        "ok_p99": pct(ok, 0.99),
        "shed_p50": pct(shed, 0.5),
        "shed_p99": pct(shed, 0.99),
    }


def run(seconds: float, open_seconds: float, renewal_due: bool, profile: bool) -> None:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("needs `wrk` and `taskset` (apt-get install wrk util-linux)")
    from bench.scratch import scratch

    admin_url = os.environ["DATABASE_URL"]
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")

    async def setup_and_drive() -> None:
        async with scratch(admin_url) as (database_url, sandbox_url):
            prepared = await _prepare(database_url, sandbox_url, redis_url, renewal_due)
            env = server_env(
                database_url,
                redis_url,
                sandbox_url,
                HOME_FRESH_S="0",
                BENCH_PERSON=prepared["person"],
                BENCH_HOLDER=prepared["holder"],
                BENCH_HALL=prepared["hall"],
                BENCH_ITEM=prepared["item"],
            )
            await asyncio.to_thread(
                _drive, env, sandbox_url, prepared["token"], seconds, open_seconds, profile
            )

    asyncio.run(setup_and_drive())


def _drive(
    env: dict[str, str], sandbox_url: str, token: str, seconds: float, open_seconds: float, profile: bool
) -> None:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115 - removed below
    script.write(LUA)
    script.close()
    rows: dict[tuple[int, int, str], dict[str, float]] = {}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    try:
        with Server(env, "floor") as floor, Server(env, "app") as app:
            servers = {"floor": floor, "app": app}
            for latency in (0, 20):
                _latency(sandbox_url, latency)
                for connections in (4, 64):
                    for label, server in servers.items():
                        url = server.url + "/api/v1/home"
                        wrk(url, token, 1, connections, script.name)  # warm: pools, statement caches
                        calls, cpu = _calls(sandbox_url), cpu_seconds(server.proc.pid)
                        row = wrk(url, token, seconds, connections, script.name)
                        row["cpu_ms"] = (cpu_seconds(server.proc.pid) - cpu) / max(1, row["requests"]) * 1000
                        after = _calls(sandbox_url)
                        for u in COUNTED:
                            row[u] = (after[u] - calls[u]) / max(1, row["requests"])
                        rows[(latency, connections, label)] = row
            _latency(sandbox_url, 0)
            capacity = rows[(0, 64, "app")]["rate"]
            overload = [
                (
                    f"{share:.0%}, defaults (HOME_MAX_IN_FLIGHT 64)",
                    asyncio.run(_open_loop(app.url + "/api/v1/home", token, capacity * share, open_seconds)),
                )
                for share in (0.8, 2.0)
            ]
        # The same overload with home left to the process-wide cap alone (512), to show what the
        # route's own cap is for.
        with Server(dict(env, HOME_MAX_IN_FLIGHT="0"), "app") as uncapped:
            got = asyncio.run(_open_loop(uncapped.url + "/api/v1/home", token, capacity * 2.0, open_seconds))
            overload.append(("200%, HOME_MAX_IN_FLIGHT=0 (only MAX_IN_FLIGHT 512)", got))
        profiled = ""
        if profile:
            path = tempfile.mktemp(prefix="sx-bench-home-", suffix=".txt")
            with Server(env, "app", profile=path) as server:
                wrk(server.url + "/api/v1/home", token, 1, 4, script.name)
                server.proc.send_signal(signal.SIGUSR1)
                wrk(server.url + "/api/v1/home", token, seconds, 4, script.name)
            profiled = Path(path).read_text()
            os.unlink(path)
    finally:
        _latency(sandbox_url, 0)
        os.unlink(script.name)
    load_after = os.getloadavg()[0]

    print(
        f"\n{seconds:g} s per row after 1 s of warm-up; both servers pinned to core 0, wrk to core 1; "
        f"{os.cpu_count()} cores shared with other users, load average {load_before:.1f} before, "
        f"{load_after:.1f} after; {time.monotonic() - started:.0f} s in all\n"
    )
    print(
        "| upstream latency | connections | server | req/s | × floor | CPU ms/req | × floor CPU | p50 ms | "
        "p99 ms | degraded | non-2xx | elicence+booking calls/req |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for latency in (0, 20):
        for connections in (4, 64):
            base = rows[(latency, connections, "floor")]
            for label in ("floor", "app"):
                r = rows[(latency, connections, label)]
                print(
                    f"| {latency} ms | {connections} | {label} | {r['rate']:,.0f} | {r['rate'] / max(base['rate'], 1e-9):.2f} | "
                    f"{r['cpu_ms']:.2f} | {r['cpu_ms'] / max(base['cpu_ms'], 1e-9):.2f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                    f"{r['degraded']:.1%} | {r['bad']:.1%} | {r['elicence']:.1f}+{r['booking']:.1f} |"
                )
    print("\nTargets (4 connections: against the floor's own p50/p99, i.e. the same upstream calls alone):\n")
    for latency in (0, 20):
        a, f = rows[(latency, 4, "app")], rows[(latency, 4, "floor")]
        print(
            f"- {latency} ms: p50 {a['p50']:.1f} ms = floor + {a['p50'] - f['p50']:.1f} ms (target ≤ + 2); "
            f"p99 {a['p99']:.1f} ms = floor p99 + {a['p99'] - f['p99']:.1f} ms (target ≤ + 5); "
            f"64 connections req/s {rows[(latency, 64, 'app')]['rate'] / max(rows[(latency, 64, 'floor')]['rate'], 1e-9):.2f}× "
            "the floor (target ≥ 0.8)"
        )
    print(
        f"\nOpen loop against the app, 0 ms upstream latency, {open_seconds:g} s each (capacity = its 64-connection rate):\n"
    )
    print(
        "| offered | req/s offered | served 200/s | degraded (of 200s) | 503 | other | 200 p50 ms | 200 p99 ms | 503 p50 ms | 503 p99 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, o in overload:
        print(
            f"| {label} | {o['offered']:,.0f} | {o['served']:,.0f} | {o['degraded']:.1%} | {o['shed']:.1%} | "
            f"{o['other']:.1%} | {o['ok_p50']:.0f} | {o['ok_p99']:.0f} | {o['shed_p50']:.1f} | {o['shed_p99']:.1f} |"
        )
    if profiled:
        print(
            "\n### Profile of the app, 4 connections, 0 ms (pyinstrument; its timings are not the table's)\n"
        )
        print(profiled)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.home")
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve", help="(internal) the pinned server process")
    srv.add_argument("mode", choices=("app", "floor"))
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration (wrk)")
    parser.add_argument("--open-seconds", type=float, default=4.0, help="per open-loop rate")
    parser.add_argument(
        "--renewal-due",
        action="store_true",
        help="the ID card 60 days from expiry: each home also asks the booking system's calendar (17 calls)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="then profile the app (pyinstrument), 4 connections"
    )
    args = parser.parse_args()
    if args.command == "serve":
        sys.path.insert(0, str(REPO))
        serve(args.mode)
    else:
        run(args.seconds, args.open_seconds, args.renewal_due, args.profile)


if __name__ == "__main__":
    main()
