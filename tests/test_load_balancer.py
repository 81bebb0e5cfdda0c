"""Three API replicas behind a real HAProxy: the booking race, idempotent duplicates, the live stream
and the write limit hold through it, and a rolling restart of every replica under steady load drops
nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from adapters.tasks import cancel
from tests.auth_helpers import login_resident
from tests.lb_helper import Replicas, haproxy
from tests.test_journey_helpers import (
    advance,
    apply,
    auth,
    bookable_item,
    deliver,
    key,
    open_days,
    upstream_urls,
)
from tests.test_push import overrides as push_overrides
from tests.test_push import pipeline, read_sse

pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(services, sandbox_url):
    group = Replicas(
        services, sandbox_url, 3, MAX_IN_FLIGHT="1000", DB_POOL_MAX="8", DB_ACQUIRE_TIMEOUT_S="10"
    )
    try:
        for port in group.ports:
            group.start(port)
        yield group
    finally:
        group.stop()


async def test_a_rolling_restart_under_load_drops_nothing(
    make_client, sandbox, sandbox_url, replicas, db
) -> None:
    login = await make_client(**upstream_urls(sandbox_url))
    who = await login_resident(login, sandbox, level=3)
    with haproxy(replicas.ports) as url:
        statuses: Counter[str] = Counter()
        odd: list[str] = []
        stop = asyncio.Event()

        async def steady(client: httpx.AsyncClient, n: int) -> None:
            paths = ["/api/v1/me", "/api/v1/appointments", "/api/v1/cases", "/healthz"]
            i = n
            while not stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                try:
                    response = await client.get(path, headers=auth(who))
                    statuses[str(response.status_code)] += 1
                    if response.status_code != 200 and len(odd) < 5:
                        odd.append(f"{path} {response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.01)

        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            load = [asyncio.create_task(steady(client, n)) for n in range(8)]
            await asyncio.sleep(1.0)
            started = time.monotonic()
            for port in replicas.ports:
                await asyncio.to_thread(replicas.restart, port)
                await asyncio.sleep(1.5)  # HAProxy's checks take the new replica in (rise 2 × 300 ms)
            restart_s = time.monotonic() - started
            stop.set()
            await asyncio.gather(*load)
        print(f"rolling restart of 3 replicas in {restart_s:.1f} s under load: {dict(statuses)}")
        assert sum(statuses.values()) > 200
        assert set(statuses) == {"200"}, (dict(statuses), odd)


async def test_the_booking_race_and_duplicates_hold_through_the_balancer(
    make_client, sandbox, sandbox_url, replicas, db
) -> None:
    login = await make_client(**upstream_urls(sandbox_url))
    item = await bookable_item(db)
    residents = await asyncio.gather(*(login_resident(login, sandbox) for _ in range(30)))
    day = (await open_days(login, residents[0], item, 4))[3]
    slot = day["slots"][-2]["slotId"]
    assert (await sandbox.put(f"/booking/_control/slots/{slot}", json={"capacity": 4})).status_code == 200
    await login.get(
        f"/api/v1/halls/{item['hall']}/slots",
        params={"item": item["code"], "date": day["date"]},
        headers=auth(residents[0]),
    )
    with haproxy(replicas.ports) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            results = await asyncio.gather(
                *(
                    client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, key()))
                    for who in residents
                )
            )
            codes = Counter(r.status_code for r in results)
            assert codes == {201: 4, 409: 26}, codes
            # One key sent 12 times at once, spread over the replicas: one effect, the rest replays or 409s.
            # A winner of the race may not hold another seat that day (the daily cap), so a loser asks.
            who = next(r for r, res in zip(residents, results, strict=True) if res.status_code == 409)
            idem = key()
            other = day["slots"][0]["slotId"]
            same = await asyncio.gather(
                *(
                    client.post("/api/v1/appointments/holds", json={"slotId": other}, headers=auth(who, idem))
                    for _ in range(12)
                )
            )
            created = [r for r in same if r.status_code == 201]
            assert created, [(r.status_code, r.text[:200]) for r in same[:3]]
            assert {r.content for r in created} == {created[0].content}
            assert all(r.status_code in (201, 409) for r in same)
            holds = await db.fetchval(
                "SELECT count(*) FROM bff.appointment_holds WHERE person_id = $1 AND slot_id = $2",
                who["person_id"],
                other,
            )
            assert holds == 1


async def test_the_live_stream_and_the_write_limit_hold_through_the_balancer(
    make_client, sandbox, sandbox_url, services, db
) -> None:
    """SSE streams held through HAProxy on each of 3 replicas all hear a case event whose webhook came in
    through the balancer too; the per-resident write limit counts every replica's writes together."""
    group = Replicas(services, sandbox_url, 3, WRITE_RATE_PER_USER="6", PUSH_RELAY_POLL_S="0.2")
    try:
        for port in group.ports:
            group.start(port)
        home = await make_client(**push_overrides(sandbox_url))
        who = await login_resident(home, sandbox, level=3)
        case = await apply(home, who, await bookable_item(db))
        project_no = case["case"]["projectNo"]
        assert (await deliver(home, await advance(sandbox, project_no, "accept"))).status_code == 200
        with haproxy(group.ports) as url:
            streams: list[list[dict[str, Any]]] = [[], [], []]
            ready = [asyncio.Event() for _ in streams]
            async with pipeline(home):
                # Round robin: three streams opened one after another land on the three replicas.
                readers = []
                for seen, up in zip(streams, ready, strict=True):
                    readers.append(asyncio.create_task(read_sse(url, who, seen, up)))
                    await asyncio.wait_for(up.wait(), 10)
                try:
                    request = await advance(
                        sandbox, project_no, "request_supplement", items=["申请表签字页"], opinion="缺签字"
                    )
                    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                        assert (await deliver(client, request)).status_code == 200
                        deadline = time.monotonic() + 10
                        while time.monotonic() < deadline and not all(
                            any(m["category"] == "action_needed" for m in seen) for seen in streams
                        ):
                            await asyncio.sleep(0.05)
                        heard = [sum(m["category"] == "action_needed" for m in seen) for seen in streams]
                        assert heard == [1, 1, 1], heard
                        # 10 writes of a resident who wrote nothing yet, spread over the replicas: one
                        # limit of 6 for them, not 6 on each replica.
                        writer = await login_resident(home, sandbox)
                        writes = [
                            await client.post(
                                "/api/v1/appointments/holds",
                                json={"slotId": "no-such-slot"},
                                headers=auth(writer, key()),
                            )
                            for _ in range(10)
                        ]
                        codes = [r.status_code for r in writes]
                        assert codes.count(429) == 4 and 429 not in codes[:6], codes
                        assert all(r.headers.get("retry-after") for r in writes[6:])
                finally:
                    assert not await cancel(readers)
    finally:
        group.stop()
