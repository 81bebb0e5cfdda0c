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
import structlog
from redis.asyncio import Redis

from push import status
from push.channels.base import ChannelClient, Outcome, Recipient
from push.metrics import FALLBACKS, LAG, OUTCOMES
from push.status import Channel
from push.templates import CATEGORIES, CHINA, Lang, Rendered, render

log = structlog.get_logger("push.notifier")
LIVE_CHANNEL = "sx:{{push}}:live:{person}"
EXTERNAL: tuple[Channel, ...] = ("wechat", "app", "sms")


# An attempt on a channel begins (or begins again): 'sending', one more try.
_ATTEMPT = """
    INSERT INTO bff.notification_attempts (notification_id, channel, send_key, status, tries)
    VALUES ($1, $2, $3, 'sending', 1)
    ON CONFLICT (notification_id, channel) DO UPDATE SET status = 'sending',
        tries = bff.notification_attempts.tries + 1
    RETURNING id
"""


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

    async def accept_many(
        self, outbox_ids: Sequence[int]
    ) -> dict[int, tuple[uuid.UUID, asyncpg.Record | None]]:
        """The notification of each outbox row (made once), the row marked finished; a row gone
        or not renderable is left out (unfinished in the outbox, published again). With each, when
        this call made it, the new row: the caller then holds its lease (`advance(nid, made=row)`).
        A stream batch at once: one read of all they depend on, one statement writing the new
        notifications, their inbox entries and the outbox rows' marks (one statement is one
        transaction; rows in id order, so concurrent batches holding some of the same rows wait for
        each other instead of deadlocking)."""
        ids = sorted(set(outbox_ids))
        rows = await self.pool.fetch(
            """
            SELECT o.id, o.topic, o.person_id, o.payload, o.delivered_at,
                   (SELECT n.id FROM bff.notifications n WHERE n.outbox_id = o.id AND n.person_id = o.person_id)
                       AS existing,
                   (SELECT s.lang FROM bff.notification_settings s WHERE s.person_id = o.person_id) AS lang,
                   array(SELECT p.category FROM bff.notification_preferences p
                          WHERE p.person_id = o.person_id AND p.channel = 'inbox' AND NOT p.enabled)
                       AS inbox_off
              FROM bff.outbox o WHERE o.id = ANY($1::bigint[]) ORDER BY o.id
            """,
            ids,
        )
        out: dict[int, tuple[uuid.UUID, asyncpg.Record | None]] = {}
        fresh: list[tuple[Any, ...]] = []
        marks: list[int] = []
        for row in rows:
            if row["existing"] is not None:
                out[row["id"]] = (row["existing"], None)
                if row["delivered_at"] is None:
                    marks.append(row["id"])
                continue
            lang: Lang = row["lang"] or "zh"
            try:
                r = render(row["topic"], row["payload"], lang)
            except Exception as exc:  # a producer's bug: this row only, tried again as the outbox says
                log.error("push_entry_failed", outbox_id=row["id"], error=type(exc).__name__)
                continue
            in_inbox = r.urgent or r.category not in row["inbox_off"]
            fresh.append(
                (
                    uuid.uuid4(),
                    row["id"],
                    row["person_id"],
                    row["topic"],
                    r.category,
                    r.urgent,
                    r.template,
                    r.version,
                    lang,
                    r.title,
                    r.body,
                    r.link,
                    in_inbox,
                )
            )
            marks.append(row["id"])
        if not marks:
            return out
        columns = list(zip(*fresh, strict=True)) if fresh else [()] * 13
        made = await self.pool.fetch(
            """
            WITH made AS (
                INSERT INTO bff.notifications (id, outbox_id, person_id, topic, category, urgent, template,
                    template_version, lang, title, body, link, in_inbox, status, next_at)
                SELECT v.*, 'created', now() + make_interval(secs => $14)
                  FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bool[],
                              $7::text[], $8::int[], $9::text[], $10::text[], $11::text[], $12::text[],
                              $13::bool[]) AS v
                ON CONFLICT (outbox_id, person_id) DO NOTHING RETURNING *
            ), inbox AS (
                INSERT INTO bff.notification_attempts (notification_id, channel, send_key, status, tries,
                    sent_at, finished_at)
                SELECT id, 'inbox', id::text || ':inbox', 'delivered', 1, now(), now() FROM made WHERE in_inbox
            ), marked AS (
                UPDATE bff.outbox SET delivered_at = now() WHERE id = ANY($15::bigint[]) AND delivered_at IS NULL
            )
            SELECT * FROM made
            """,
            *[list(c) for c in columns],
            self.lease_s,
            marks,
        )
        for n in made:
            out[n["outbox_id"]] = (n["id"], n)
        lost = [f[1] for f in fresh if f[1] not in out]
        if lost:  # a concurrent consumer made them first
            for r2 in await self.pool.fetch(
                "SELECT outbox_id, id FROM bff.notifications WHERE outbox_id = ANY($1::bigint[])", lost
            ):
                out[r2["outbox_id"]] = (r2["id"], None)
        for n in made:
            if n["in_inbox"]:
                OUTCOMES.labels("inbox", status.DELIVERED).inc()
                # Live updates are best effort: the inbox has it, and SSE resumes from it.
                with contextlib.suppress(Exception):
                    await self.redis.publish(live_channel(n["person_id"]), str(n["seq"]))
        return out

    # --- orchestrate ---

    async def _context(self, conn: Any, n: asyncpg.Record) -> asyncpg.Record:
        """Everything a run of the channels reads, in one round trip: quiet hours, the event, who
        to reach (WeChat binding, devices newest first), the attempts so far and the channels
        switched off for the category."""
        row: asyncpg.Record | None = await conn.fetchrow(
            """
            SELECT s.quiet_start, s.quiet_end, o.payload, o.created_at,
                   (SELECT b.openid FROM bff.wechat_bindings b WHERE b.person_id::text = $2
                     ORDER BY b.last_login_at DESC LIMIT 1) AS openid,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(d.token, d.platform) ORDER BY d.at DESC, d.token), '[]')
                      FROM (SELECT token, platform, registered_at AS at FROM bff.push_devices
                             WHERE person_id = $2 AND pruned_at IS NULL
                             ORDER BY registered_at DESC, token LIMIT 5) d) AS devices,
                   (SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]') FROM bff.notification_attempts a
                     WHERE a.notification_id = $3) AS attempts,
                   array(SELECT p.channel FROM bff.notification_preferences p
                          WHERE p.person_id = $2 AND p.category = $4 AND NOT p.enabled) AS off
              FROM bff.outbox o LEFT JOIN bff.notification_settings s ON s.person_id = $2
             WHERE o.id = $1
            """,
            n["outbox_id"],
            n["person_id"],
            n["id"],
            n["category"],
        )
        assert row is not None  # the outbox row outlives its notifications
        return row

    async def advance(self, nid: uuid.UUID, *, made: asyncpg.Record | None = None) -> str | None:
        """Run the notification's channels as far as they go now; its status, or None if another
        worker holds it (or it is not due). `made`: the row the caller just made (it holds its lease)."""
        # Statements go through the pool one by one: no connection is held across a provider's call,
        # so a slow provider cannot use up the pool the worker's jobs share.
        conn = self.pool
        n: asyncpg.Record | None = made
        if n is None:
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
        ctx = await self._context(conn, n)
        if not n["urgent"]:
            ends = in_quiet_hours(now, ctx["quiet_start"], ctx["quiet_end"])
            if ends is not None:
                return status.CREATED, ends
        event_at = ctx["created_at"]
        rendered = render(n["topic"], ctx["payload"], n["lang"])
        person_id = n["person_id"]

        async def phone() -> str | None:
            return await self.phone_of(person_id)

        recipient = Recipient(
            person_id, ctx["openid"], [(token, platform) for token, platform in ctx["devices"]], phone
        )
        attempts = {a["channel"]: a for a in ctx["attempts"]}
        tried_any = False
        previous: str | None = None
        for name in (c for c in EXTERNAL if c not in ctx["off"] and c in self.channels):
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
            if channel.reserves:
                # What the send uses up is taken in the transaction that records the attempt.
                async with self.pool.acquire() as tx, tx.transaction():
                    if not await channel.reserve(tx, recipient, rendered):
                        continue
                    attempt_id = await tx.fetchval(_ATTEMPT, n["id"], name, send_key)
            else:
                attempt_id = await conn.fetchval(_ATTEMPT, n["id"], name, send_key)
            tried_any = True
            outcome = await channel.send(conn, recipient, rendered, send_key)
            after, tries = await self._finish(conn, attempt_id, outcome)
            OUTCOMES.labels(name, outcome.status).inc()
            # The provider's receipt may have come back before the answer was recorded: it wins.
            if after != outcome.status and after in (status.DELIVERED, status.PERMANENT_FAILURE):
                outcome = Outcome(after, provider_ref=outcome.provider_ref)
            if outcome.status in (status.DELIVERED, status.SENDING):
                LAG.labels(name).observe(max(0.0, (self.now() - event_at).total_seconds()))
                return outcome.status, None
            if outcome.status == status.TECHNICAL_FAILURE:
                return status.TECHNICAL_FAILURE, None
            if outcome.status == status.TEMPORARY_FAILURE:
                if tries <= len(self.retry_delays):
                    return status.TEMPORARY_FAILURE, now + timedelta(seconds=self.retry_delays[tries - 1])
                FALLBACKS.labels(name, "retries_spent").inc()
                continue
            previous = name
        if not tried_any:
            # Nothing external can reach this resident (or all are switched off): the inbox is it.
            return (status.DELIVERED if n["in_inbox"] else status.PERMANENT_FAILURE), None
        return status.PERMANENT_FAILURE, None

    async def _finish(self, conn: Any, attempt_id: int, outcome: Outcome) -> tuple[str, int]:
        """Record the send's outcome unless a receipt already ended the attempt; the attempt's
        status and tries as they now are."""
        row = await conn.fetchrow(
            """
            WITH done AS (
                UPDATE bff.notification_attempts SET status = $2, provider_ref = coalesce($3, provider_ref),
                    reason = $4, target = coalesce($5, target),
                    sent_at = CASE WHEN $2 IN ('sending', 'delivered') THEN now() ELSE sent_at END,
                    finished_at = CASE WHEN $2 IN ('delivered', 'permanent-failure', 'technical-failure')
                                       THEN now() ELSE NULL END
                WHERE id = $1 AND finished_at IS NULL
                RETURNING status, tries
            )
            SELECT status, tries FROM done
            UNION ALL
            SELECT status, tries FROM bff.notification_attempts WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM done)
            """,
            attempt_id,
            outcome.status,
            outcome.provider_ref,
            outcome.reason,
            outcome.target,
        )
        assert row is not None
        return row["status"], row["tries"]

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
