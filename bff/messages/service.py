"""The resident's side of notifications: the inbox, live updates (SSE over Redis pub/sub, so it
works on whichever replica the phone is connected to), devices, subscribe-message consent,
preferences, and the providers' receipts. What is sent, when and how lives in `push/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, time
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis

from adapters.errors import ProblemError
from adapters.pushgw import callback as pushgw_callback
from adapters.sms import callback as sms_callback
from auth import audit
from auth.principal import Principal
from bff.idempotency import IdemContext, Recorded
from bff.messages.schemas import (
    AttemptOut,
    ConsentOut,
    DeviceIn,
    DeviceOut,
    MessageDetail,
    MessageOut,
    MessagePage,
    PreferencesIn,
    PreferencesOut,
    ReadOut,
    ReceiptOut,
    SubscriptionsIn,
    SubscriptionsOut,
)
from bff.platform.access import owned, parse_uuid
from bff.platform.paging import keyset_after, keyset_page
from push.ledger import KNOWN_TEMPLATES, LOCKED, Ledger, Preferences
from push.notifier import Notifier, live_channel

MAX_BACKLOG = 50


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _message(row: asyncpg.Record) -> MessageOut:
    return MessageOut(
        id=str(row["id"]),
        category=row["category"],
        title=row["title"],
        body=row["body"],
        link=row["link"],
        urgent=row["urgent"],
        status=row["status"],
        read=row["read_at"] is not None,
        created_at=row["created_at"].astimezone(UTC).isoformat(),
    )


def _clock(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def _prefs(p: Preferences) -> PreferencesOut:
    return PreferencesOut(
        lang=p.lang,  # type: ignore[arg-type]
        quiet_start=p.quiet_start.strftime("%H:%M") if p.quiet_start else None,
        quiet_end=p.quiet_end.strftime("%H:%M") if p.quiet_end else None,
        channels=p.matrix,
        locked=sorted(f"{c}/{ch}" for c, ch in LOCKED),
    )


class MessageService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        ledger: Ledger,
        notifier: Notifier,
        *,
        pushgw_secret: str,
        sms_secret: str,
        heartbeat_s: float = 15.0,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.ledger = ledger
        self.notifier = notifier
        self._pushgw_secret = pushgw_secret
        self._sms_secret = sms_secret
        self.heartbeat_s = heartbeat_s

    # --- the inbox ---

    async def _unread(self, conn: Any, person_id: str) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM bff.notifications WHERE person_id = $1 AND in_inbox AND read_at IS NULL",
                person_id,
            )
        )

    async def unread_count(self, person_id: str) -> int:
        """A read port for home's badges."""
        return await self._unread(self.pool, person_id)

    async def page(self, principal: Principal, limit: int, cursor: str | None) -> MessagePage:
        moment, ident = keyset_after(cursor)
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.notifications
            WHERE person_id = $1 AND in_inbox
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
            ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            principal.person_id,
            moment,
            ident,
            limit + 1,
        )
        shown, following = keyset_page(rows, limit, "created_at")
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action="messages.list",
            object=f"person:{principal.person_id}",
            result="ok",
            channel=principal.channel,
        )
        return MessagePage(
            items=[_message(r) for r in shown],
            next_cursor=following,
            unread_count=await self._unread(self.pool, principal.person_id),
        )

    async def _own(self, conn: Any, principal: Principal, message_id: str) -> asyncpg.Record:
        row = await conn.fetchrow(
            "SELECT * FROM bff.notifications WHERE id = $1 AND in_inbox", parse_uuid(message_id, "message")
        )
        return await owned(self.pool, principal, "message", message_id, row)

    async def get(self, principal: Principal, message_id: str) -> MessageDetail:
        row = await self._own(self.pool, principal, message_id)
        attempts = await self.pool.fetch(
            "SELECT * FROM bff.notification_attempts WHERE notification_id = $1 ORDER BY id", row["id"]
        )
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action="message.read_detail",
            object=f"message:{row['id']}",
            result="ok",
            channel=principal.channel,
        )
        base = _message(row)
        return MessageDetail(
            **{f: getattr(base, f) for f in base.__struct_fields__},
            template=row["template"],
            template_version=row["template_version"],
            lang=row["lang"],
            channels=[
                AttemptOut(
                    channel=a["channel"],
                    status=a["status"],
                    tries=a["tries"],
                    reason=a["reason"],
                    started_at=a["started_at"].astimezone(UTC).isoformat(),
                    finished_at=_iso(a["finished_at"]),
                )
                for a in attempts
            ],
        )

    async def mark_read(self, ctx: IdemContext, principal: Principal, message_id: str) -> Recorded[ReadOut]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._own(conn, principal, message_id)
            await conn.execute(
                "UPDATE bff.notifications SET read_at = coalesce(read_at, now()) WHERE id = $1", row["id"]
            )
            result = ReadOut(
                id=str(row["id"]), read=True, unread_count=await self._unread(conn, principal.person_id)
            )
            return await ctx.finish(conn, result)

    # --- live updates ---

    async def _since(self, person_id: str, seq: int, limit: int) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                """
                SELECT * FROM bff.notifications WHERE person_id = $1 AND in_inbox AND seq > $2
                ORDER BY seq LIMIT $3
                """,
                person_id,
                seq,
                limit,
            )
        )

    async def live(
        self, principal: Principal, last_event_id: str | None
    ) -> AsyncIterator[tuple[str, str, str]]:
        """(event id, event name, data) for SSE: what came since `Last-Event-ID`, then each new
        message as any replica's consumer announces it, and a heartbeat every `heartbeat_s`."""
        person = principal.person_id
        if last_event_id and last_event_id.isdigit():
            seq = int(last_event_id)
        else:
            seq = int(
                await self.pool.fetchval(
                    "SELECT coalesce(max(seq), 0) FROM bff.notifications WHERE person_id = $1", person
                )
            )
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(live_channel(person))
        try:
            # Subscribed first, then the backlog: nothing published in between is missed.
            for row in await self._since(person, seq, MAX_BACKLOG):
                seq = row["seq"]
                yield str(seq), "message", msgspec.json.encode(_message(row)).decode()
            loop = asyncio.get_running_loop()
            beat = loop.time() + self.heartbeat_s
            while True:
                wait = max(0.05, min(1.0, beat - loop.time()))
                signal = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                if signal is not None:
                    for row in await self._since(person, seq, MAX_BACKLOG):
                        seq = row["seq"]
                        yield str(seq), "message", msgspec.json.encode(_message(row)).decode()
                if loop.time() >= beat:
                    beat = loop.time() + self.heartbeat_s
                    yield "", "heartbeat", ""
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # --- devices, consent, preferences ---

    async def register_device(
        self, ctx: IdemContext, principal: Principal, data: DeviceIn
    ) -> Recorded[DeviceOut]:
        async with self.pool.acquire() as conn, conn.transaction():
            await self.ledger.register_device(
                conn, principal.person_id, data.token, data.platform, data.app_version, principal.channel
            )
            return await ctx.finish(
                conn, DeviceOut(platform=data.platform, token_suffix=data.token[-6:], registered=True)
            )

    async def record_subscriptions(
        self, ctx: IdemContext, principal: Principal, data: SubscriptionsIn
    ) -> Recorded[SubscriptionsOut]:
        unknown = sorted(set(data.results) - KNOWN_TEMPLATES)
        if unknown:
            raise ProblemError(
                f"unknown template ids: {unknown}",
                status=422,
                code="unknown_template",
                detail_zh=f"未知的模板编号：{unknown}",
            )
        async with self.pool.acquire() as conn, conn.transaction():
            openid = await conn.fetchval(
                "SELECT openid FROM bff.sessions WHERE id = $1", uuid.UUID(principal.session_id)
            )
            if not openid:
                raise ProblemError(
                    "subscribe messages are chosen in a mini-program session",
                    status=409,
                    code="wechat_not_bound",
                    detail_zh="订阅消息只能在小程序会话中选择",
                )
            rows = await self.ledger.record_choices(
                conn, principal.person_id, openid, data.results, principal.channel
            )
            out = SubscriptionsOut(
                consents=[
                    ConsentOut(
                        template_id=r["template_id"],
                        last_result=r["last_result"],
                        long_term=r["long_term"],
                        remaining=r["remaining"],
                        updated_at=r["updated_at"].astimezone(UTC).isoformat(),
                    )
                    for r in rows
                ]
            )
            return await ctx.finish(conn, out)

    async def preferences(self, principal: Principal) -> PreferencesOut:
        return _prefs(await self.ledger.preferences(self.pool, principal.person_id))

    async def set_preferences(
        self, ctx: IdemContext, principal: Principal, data: PreferencesIn
    ) -> Recorded[PreferencesOut]:
        for category, switches in data.channels.items():
            for ch, enabled in switches.items():
                if (category, ch) in LOCKED and not enabled:
                    raise ProblemError(
                        f"{category}/{ch} cannot be switched off",
                        status=422,
                        code="preference_locked",
                        detail_zh=f"{category}/{ch} 不能关闭",
                    )
        if (data.quiet_start is None) != (data.quiet_end is None):
            raise ProblemError(
                "quiet hours need both a start and an end",
                status=400,
                code="validation_failed",
                detail_zh="免打扰时段须同时给出开始和结束时间",
            )
        async with self.pool.acquire() as conn, conn.transaction():
            prefs = await self.ledger.set_preferences(
                conn,
                principal.person_id,
                lang=data.lang,
                quiet_start=_clock(data.quiet_start),
                quiet_end=_clock(data.quiet_end),
                matrix={str(c): {str(k): v for k, v in s.items()} for c, s in data.channels.items()},
                channel=principal.channel,
            )
            return await ctx.finish(conn, _prefs(prefs))

    # --- provider receipts (verified in their adapters) ---

    async def push_receipt(self, headers: Mapping[str, str], body: bytes) -> ReceiptOut:
        receipt = pushgw_callback.verify(headers, body, secret=self._pushgw_secret)
        # Our request_id is "<send key>:<token hash>".
        send_key = receipt.request_id.rsplit(":", 1)[0]
        applied = await self.notifier.receipt(
            "app", send_key, receipt.message_id, receipt.status == "delivered", receipt.reason
        )
        return ReceiptOut(outcome="applied" if applied else "duplicate")

    async def sms_reports(self, headers: Mapping[str, str], body: bytes) -> None:
        for report in sms_callback.verify(headers, body, secret=self._sms_secret):
            if report.out_id:  # our send key; reports of sends without one are not ours
                await self.notifier.receipt(
                    "sms",
                    report.out_id,
                    report.biz_id,
                    report.success,
                    None if report.success else report.err_code,
                )
