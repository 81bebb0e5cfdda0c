"""The journey's worker jobs (importing this module registers them):

- `cases_reconcile`: read the case system's change feed, so a lost webhook is caught up;
- `appointments_resolve_pending`: bookings whose upstream answer was lost are asked again with
  the same request id (the booking system de-duplicates), so a seat is never held forever;
- `idempotency_expire`: drop idempotency records past their keep time (>= 24 h, API.md).
"""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from adapters.booking.client import BookingClient
from adapters.cases.client import CaseClient
from adapters.http import Policy, Upstream
from bff.appointments.service import AppointmentService
from bff.cases.events import reconcile
from bff.platform.settings import Settings
from bff.worker import Job, register


def _policy(settings: Settings) -> Policy:
    return Policy(
        connect_timeout=settings.upstream_connect_timeout_s,
        call_timeout=settings.upstream_call_timeout_s,
        max_in_flight=4,
        max_retries=settings.upstream_max_retries,
    )


async def run_reconcile(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
    upstream = Upstream("cases_feed", settings.cases_url, _policy(settings))
    await upstream.start()
    try:
        await reconcile(pool, CaseClient(upstream))
    finally:
        await upstream.close()


async def run_resolve_pending(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
    upstream = Upstream("booking_resolver", settings.booking_url, _policy(settings))
    await upstream.start()
    try:
        service = AppointmentService(
            pool, BookingClient(upstream), hold_ttl_s=settings.hold_ttl_s, hold_quota=settings.hold_quota
        )
        await service.resolve_pending()
    finally:
        await upstream.close()


async def run_expire_keys(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
    await pool.execute(
        """
        DELETE FROM bff.idempotency_keys
        WHERE ctid IN (SELECT ctid FROM bff.idempotency_keys WHERE expires_at < now() LIMIT 5000)
        """
    )


register(Job("cases_reconcile", interval=15.0, budget=60.0, run=run_reconcile))
register(Job("appointments_resolve_pending", interval=30.0, budget=60.0, run=run_resolve_pending))
register(Job("idempotency_expire", interval=600.0, budget=60.0, run=run_expire_keys))
