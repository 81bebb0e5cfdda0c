"""What the benchmarks share: the server process's own CPU time, wrk's latency figures, and the
rows an ordinary screen reads (three appointments and one case of one resident)."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

TICKS = os.sysconf("SC_CLK_TCK")
_UPSTREAMS = ("catalogue", "wechat", "idp", "elicence", "booking", "cases", "ratings", "courier", "hotline")


def server_env(database_url: str, redis_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked API process: the scratch database, Redis, every upstream at the
    scratch sandbox, tokens that outlive the run."""
    return dict(
        os.environ,
        ENV="test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AUTH_ACCESS_TTL_S="600",
        LOG_LEVEL="INFO",
        **{f"{name.upper()}_URL": f"{sandbox_url}/{name}" for name in _UPSTREAMS},
        **extra,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk_ms(text: str) -> float:
    found = re.match(r"([\d.]+)([a-z]+)", text)
    assert found is not None, text
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


async def seed_screens(database_url: str, person: str) -> None:
    """Three booked appointments and one submitted case of `person`, written straight into the BFF's tables."""
    conn = await asyncpg.connect(database_url)
    try:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        for n in range(3):
            slot, at = f"bench-slot-{n}", start + timedelta(hours=n)
            await conn.execute(
                """INSERT INTO bff.slots (slot_id, hall_id, item_code, starts_at, ends_at, capacity)
                   VALUES ($1, 'hall-1', '001', $2, $3, 10)""",
                slot,
                at,
                at + timedelta(minutes=30),
            )
            await conn.execute(
                """INSERT INTO bff.appointments (id, person_id, slot_id, hall_id, item_code, starts_at, ends_at,
                                                 status, upstream_request_id, booking_no, ticket_no)
                   VALUES ($1, $2, $3, 'hall-1', '001', $4, $5, 'booked', $6, $7, $8)""",
                uuid.uuid4(),
                person,
                slot,
                at,
                at + timedelta(minutes=30),
                uuid.uuid4(),
                f"B{n}",
                f"A{n:03d}",
            )
        case_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO bff.cases (id, person_id, request_id, project_no, item_code, item_name, region_code,
                                      task_code, channel, promise_days, status, form, materials)
               VALUES ($1, $2, $1, 'P-bench-1', '001', '测试事项', '430000', 'T001', 'online', 5, 'submitted',
                       '{}', '[]')""",
            case_id,
            person,
        )
        await conn.execute(
            """INSERT INTO bff.case_events (event_id, case_id, case_seq, type, occurred_at, data, via)
               VALUES ('bench-ev-1', $1, 1, 'submitted', now(), '{}', 'reply')""",
            case_id,
        )
    finally:
        await conn.close()
