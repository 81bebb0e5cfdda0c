"""From one outbox row to the resident: the notification (once per event and resident), the
inbox, the live signal, then the channels in order until one takes it.

Exactly one user-visible message per event:
- the notification's unique key is (outbox row, person): a re-published or re-claimed event finds
  the one it made;
- one worker at a time advances a notification: a lease (`next_at` pushed `lease_s` ahead) is taken
  with one conditional UPDATE; a dead worker's lease lapses and the sweep (`due`) takes over;
- each channel's attempt is one row (`notification_id`, `channel`) whose send key the provider
  de-duplicates by (push gateway `request_id`, SMS `out_id`), so repeating a send is harmless; WeChat
  subscribe has no send key, so its attempt is committed before the call and an attempt found
  started (a worker died mid-call) is a technical failure, never sent again;
- the channels are tried in order (WeChat subscribe → app push → SMS, filtered by preferences and
  consent) and the first that takes it ends the search; a permanent failure falls back to the next,
  a temporary one is retried with backoff (`retry_delays`) and then falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from push import status
from push.channels.base import ChannelClient, Outcome, Recipient
from push.metrics import FALLBACKS, LAG, OUTCOMES
from push.status import Channel
from push.templates import CATEGORIES, CHINA, Lang, Rendered, render

LIVE_CHANNEL = "sx:{{push}}:live:{person}"
EXTERNAL: tuple[Channel, ...] = ("wechat", "app", "sms")


def live_channel(person_id: str) -> str:
    return LIVE_CHANNEL.format(person=person_id)


def in_quiet_hours(now: datetime, start: time | None, end: time | None) -> datetime | None:
    """When quiet hours end if `now` (any zone) falls inside them (China time), else None."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(CHINA)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(UTC)


class Notifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        channels: Sequence[ChannelClient],
        phone_of: Callable[[str], Awaitable[str | None]],
        *,
        lease_s: float = 30.0,
        retry_delays: Sequence[float] = (5.0, 30.0, 120.0),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.channels = {c.name: c for c in channels}
        self.phone_of = phone_of
        self.lease_s = lease_s
        self.retry_delays = tuple(retry_delays)
        self.now = now

    # --- materialise ---

    async def accept(self, outbox_id: int) -> tuple[uuid.UUID, bool] | None:
        """The notification of an outbox row (made once), the row marked finished; None if gone.
        True with it when this call made it: the caller then holds its lease (`advance(owned=True)`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, topic, person_id, payload, delivered_at FROM bff.outbox WHERE id = $1", outbox_id
            )
            if row is None:
                return None
            existing = await conn.fetchval(
                "SELECT id FROM bff.notifications WHERE outbox_id = $1 AND person_id = $2",
                outbox_id,
                row["person_id"],
            )
            if existing is not None:
                if row["delivered_at"] is None:
                    await conn.execute("UPDATE bff.outbox SET delivered_at = now() WHERE id = $1", outbox_id)
                return existing, False
            settings = await conn.fetchrow(
                "SELECT lang FROM bff.notification_settings WHERE person_id = $1", row["person_id"]
            )
            lang: Lang = settings["lang"] if settings else "zh"
            payload = row["payload"]
            rendered = render(row["topic"], payload, lang)
            inbox_off = await conn.fetchval(
                """
                SELECT NOT enabled FROM bff.notification_preferences
                WHERE person_id = $1 AND category = $2 AND channel = 'inbox'
                """,
                row["person_id"],
                rendered.category,
            )
            in_inbox = rendered.urgent or not inbox_off
            nid = uuid.uuid4()
            inserted = await conn.fetchval(
                """
                INSERT INTO bff.notifications (id, outbox_id, person_id, topic, category, urgent, template,
                    template_version, lang, title, body, link, in_inbox, status, next_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'created',
                        now() + make_interval(secs => $14))
                ON CONFLICT (outbox_id, person_id) DO NOTHING RETURNING seq
                """,
                nid,
                outbox_id,
                row["person_id"],
                row["topic"],
                rendered.category,
                rendered.urgent,
                rendered.template,
                rendered.version,
                lang,
                rendered.title,
                rendered.body,
                rendered.link,
                in_inbox,
                self.lease_s,
            )
            if inserted is None:  # a concurrent consumer made it first
                other: uuid.UUID = await conn.fetchval(
                    "SELECT id FROM bff.notifications WHERE outbox_id = $1 AND person_id = $2",
                    outbox_id,
                    row["person_id"],
                )
                return other, False
            if in_inbox:
                await conn.execute(
                    """
                    INSERT INTO bff.notification_attempts (notification_id, channel, send_key, status, tries,
                        sent_at, finished_at)
                    VALUES ($1, 'inbox', $2, 'delivered', 1, now(), now())
                    """,
                    nid,
                    f"{nid}:inbox",
                )
            await conn.execute("UPDATE bff.outbox SET delivered_at = now() WHERE id = $1", outbox_id)
        if in_inbox:
            OUTCOMES.labels("inbox", status.DELIVERED).inc()
            # Live updates are best effort: the inbox has it, and SSE resumes from it.
            with contextlib.suppress(Exception):
                await self.redis.publish(live_channel(row["person_id"]), str(inserted))
        return nid, True

    # --- orchestrate ---

    async def _recipient(self, conn: Any, person_id: str) -> Recipient:
        openid = await conn.fetchval(
            """
            SELECT openid FROM bff.wechat_bindings WHERE person_id::text = $1
            ORDER BY last_login_at DESC LIMIT 1
            """,
            person_id,
        )
        devices = await conn.fetch(
            """
            SELECT token, platform FROM bff.push_devices WHERE person_id = $1 AND pruned_at IS NULL
            ORDER BY registered_at DESC LIMIT 5
            """,
            person_id,
        )

        async def phone() -> str | None:
            return await self.phone_of(person_id)

        return Recipient(person_id, openid, [(d["token"], d["platform"]) for d in devices], phone)

    async def _plan(self, conn: Any, person_id: str, category: str) -> list[Channel]:
        off = {
            r["channel"]
            for r in await conn.fetch(
                """
                SELECT channel FROM bff.notification_preferences
                WHERE person_id = $1 AND category = $2 AND NOT enabled
                """,
                person_id,
                category,
            )
        }
        return [c for c in EXTERNAL if c not in off and c in self.channels]

    async def advance(self, nid: uuid.UUID, *, owned: bool = False) -> str | None:
        """Run the notification's channels as far as they go now; its status, or None if another
        worker holds it (or it is not due). `owned`: the caller just made it and holds its lease."""
        # Statements go through the pool one by one: no connection is held across a provider's call,
        # so a slow provider cannot use up the pool the worker's jobs share.
        conn = self.pool
        if owned:
            n = await conn.fetchrow("SELECT * FROM bff.notifications WHERE id = $1", nid)
        else:
            n = await conn.fetchrow(
                """
                UPDATE bff.notifications SET next_at = now() + make_interval(secs => $2), updated_at = now()
                WHERE id = $1 AND next_at IS NOT NULL AND next_at <= now()
                RETURNING *
                """,
                nid,
                self.lease_s,
            )
        if n is None:
            return None
        # An exception leaves the lease to lapse: the sweep retries after `lease_s`.
        final, next_at = await self._run(conn, n)
        written = await conn.fetchval(
            """
            UPDATE bff.notifications SET status = $2, next_at = $3, updated_at = now()
            WHERE id = $1 AND updated_at = $4 RETURNING 1
            """,
            nid,
            final,
            next_at,
            n["updated_at"],
        )
        if written is None:
            # A receipt landed while this worker held the lease: look again at once (the
            # sweep decides from the attempts as they are now).
            await conn.execute("UPDATE bff.notifications SET next_at = now() WHERE id = $1", nid)
        return final

    async def _run(self, conn: Any, n: asyncpg.Record) -> tuple[str, datetime | None]:
        now = self.now()
        if not n["urgent"]:
            quiet = await conn.fetchrow(
                "SELECT quiet_start, quiet_end FROM bff.notification_settings WHERE person_id = $1",
                n["person_id"],
            )
            if quiet is not None:
                ends = in_quiet_hours(now, quiet["quiet_start"], quiet["quiet_end"])
                if ends is not None:
                    return status.CREATED, ends
        event = await conn.fetchrow(
            "SELECT payload, created_at FROM bff.outbox WHERE id = $1", n["outbox_id"]
        )
        event_at = event["created_at"]
        rendered = render(n["topic"], event["payload"], n["lang"])
        recipient = await self._recipient(conn, n["person_id"])
        attempts = {
            r["channel"]: r
            for r in await conn.fetch(
                "SELECT * FROM bff.notification_attempts WHERE notification_id = $1", n["id"]
            )
        }
        tried_any = False
        previous: str | None = None
        for name in await self._plan(conn, n["person_id"], n["category"]):
            channel = self.channels[name]
            attempt = attempts.get(name)
            if previous is not None:
                FALLBACKS.labels(previous, "permanent").inc()
                previous = None
            if attempt is not None:
                tried_any = True
                state = attempt["status"]
                if state in (status.DELIVERED, status.SENDING) and attempt["provider_ref"]:
                    return state, None
                if state == status.TECHNICAL_FAILURE:
                    return status.TECHNICAL_FAILURE, None
                if state == status.PERMANENT_FAILURE:
                    previous = name
                    continue
                if state == status.SENDING and not channel.resendable:
                    # Started, outcome never recorded: the worker died mid-call. Maybe sent.
                    await self._finish(
                        conn, attempt["id"], Outcome(status.TECHNICAL_FAILURE, reason="unknown_outcome")
                    )
                    return status.TECHNICAL_FAILURE, None
                if state == status.TEMPORARY_FAILURE and attempt["tries"] > len(self.retry_delays):
                    previous = name
                    continue
            reason = await channel.available(conn, recipient, rendered)
            if reason is not None:
                continue
            send_key = f"{n['id']}:{name}"
            async with self.pool.acquire() as tx, tx.transaction():
                if not await channel.reserve(tx, recipient, rendered):
                    continue
                attempt_id = await tx.fetchval(
                    """
                    INSERT INTO bff.notification_attempts (notification_id, channel, send_key, status, tries)
                    VALUES ($1, $2, $3, 'sending', 1)
                    ON CONFLICT (notification_id, channel) DO UPDATE SET status = 'sending',
                        tries = bff.notification_attempts.tries + 1
                    RETURNING id
                    """,
                    n["id"],
                    name,
                    send_key,
                )
            tried_any = True
            outcome = await channel.send(conn, recipient, rendered, send_key)
            await self._finish(conn, attempt_id, outcome)
            OUTCOMES.labels(name, outcome.status).inc()
            # The provider's receipt may have come back before the answer was recorded: it wins.
            after = await conn.fetchval(
                "SELECT status FROM bff.notification_attempts WHERE id = $1", attempt_id
            )
            if after != outcome.status and after in (status.DELIVERED, status.PERMANENT_FAILURE):
                outcome = Outcome(after, provider_ref=outcome.provider_ref)
            if outcome.status in (status.DELIVERED, status.SENDING):
                LAG.labels(name).observe(max(0.0, (self.now() - event_at).total_seconds()))
                return outcome.status, None
            if outcome.status == status.TECHNICAL_FAILURE:
                return status.TECHNICAL_FAILURE, None
            if outcome.status == status.TEMPORARY_FAILURE:
                tries = await conn.fetchval(
                    "SELECT tries FROM bff.notification_attempts WHERE id = $1", attempt_id
                )
                if tries <= len(self.retry_delays):
                    return status.TEMPORARY_FAILURE, now + timedelta(seconds=self.retry_delays[tries - 1])
                FALLBACKS.labels(name, "retries_spent").inc()
                continue
            previous = name
        if not tried_any:
            # Nothing external can reach this resident (or all are switched off): the inbox is it.
            return (status.DELIVERED if n["in_inbox"] else status.PERMANENT_FAILURE), None
        return status.PERMANENT_FAILURE, None

    async def _finish(self, conn: Any, attempt_id: int, outcome: Outcome) -> None:
        await conn.execute(
            """
            UPDATE bff.notification_attempts SET status = $2, provider_ref = coalesce($3, provider_ref),
                reason = $4, target = coalesce($5, target), sent_at = CASE WHEN $2 IN ('sending', 'delivered') THEN now() ELSE sent_at END,
                finished_at = CASE WHEN $2 IN ('delivered', 'permanent-failure', 'technical-failure')
                                   THEN now() ELSE NULL END
            WHERE id = $1 AND finished_at IS NULL
            """,
            attempt_id,
            outcome.status,
            outcome.provider_ref,
            outcome.reason,
            outcome.target,
        )

    async def receipt(
        self, channel: Channel, send_key: str, provider_ref: str, delivered: bool, reason: str | None
    ) -> bool:
        """A provider's receipt, matched by our send key (it may arrive before the send's answer
        was recorded): the attempt ends; a failed one lets the notification fall back."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE bff.notification_attempts SET status = $3, reason = coalesce($4, reason), finished_at = now(),
                    provider_ref = coalesce(provider_ref, $5)
                WHERE channel = $1 AND send_key = $2 AND status = 'sending' AND finished_at IS NULL
                RETURNING notification_id, target
                """,
                channel,
                send_key,
                status.DELIVERED if delivered else status.PERMANENT_FAILURE,
                reason,
                provider_ref,
            )
            if row is None:
                return False  # unknown or already final: a repeated receipt
            OUTCOMES.labels(channel, status.DELIVERED if delivered else status.PERMANENT_FAILURE).inc()
            if delivered:
                await conn.execute(
                    "UPDATE bff.notifications SET status = 'delivered', updated_at = now() WHERE id = $1",
                    row["notification_id"],
                )
                return True
            if channel == "app" and reason == "UNREGISTERED" and row["target"]:
                await conn.execute(
                    """
                    UPDATE bff.push_devices SET pruned_at = now(), pruned_reason = 'UNREGISTERED'
                    WHERE token = $1 AND pruned_at IS NULL
                    """,
                    row["target"],
                )
            FALLBACKS.labels(channel, "receipt_failed").inc()
            await conn.execute(
                "UPDATE bff.notifications SET next_at = now(), updated_at = now() WHERE id = $1",
                row["notification_id"],
            )
        await self.advance(row["notification_id"])
        return True

    async def due(self, limit: int = 200, concurrency: int = 16) -> int:
        """The sweep: notifications whose retry time, quiet hours or a dead worker's lease has passed."""
        ids = await self.pool.fetch(
            "SELECT id FROM bff.notifications WHERE next_at <= now() ORDER BY next_at LIMIT $1", limit
        )
        slots = asyncio.Semaphore(concurrency)

        async def one(nid: uuid.UUID) -> bool:
            async with slots:
                return await self.advance(nid) is not None

        return sum(await asyncio.gather(*(one(r["id"]) for r in ids)))


__all__ = ["CATEGORIES", "Notifier", "Rendered", "in_quiet_hours", "live_channel"]
