"""What residents allow: device tokens, the subscribe-message consent ledger, preferences per
category × channel, quiet hours and language. Every change is appended to `bff.consent_log` with its
time and the channel (app, miniprogram, kiosk) it was made on, in the same transaction.

What cannot be switched off: an action-needed message (a 补正 request, a fee due) always reaches
the inbox, and ignores quiet hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any

import asyncpg

from push.status import Channel
from push.templates import CATEGORIES, URGENT

CHANNELS: tuple[Channel, ...] = ("inbox", "wechat", "app", "sms")
LOCKED: frozenset[tuple[str, str]] = frozenset((c, "inbox") for c in URGENT)
# Long-term (政务民生) templates: one accept allows many messages until a reject.
LONG_TERM_TEMPLATES = frozenset(
    {"sxCaseProgress-0001-LongTermGovServiceTmpl01", "sxShipment-0002-LongTermGovServiceTemplate2"}
)
KNOWN_TEMPLATES = LONG_TERM_TEMPLATES | {
    "sxSupplement-0003-OneTimeTemplateBuZheng003",
    "sxFeeDue-0004-OneTimeTemplatePaymentDue0004",
    "sxBooking-0005-OneTimeTemplateAppointment05",
    "sxReminder-0006-OneTimeTemplateTomorrow0006",
}


@dataclass(frozen=True)
class Preferences:
    lang: str
    quiet_start: time | None
    quiet_end: time | None
    matrix: dict[str, dict[str, bool]]  # category -> channel -> enabled


async def _log(conn: Any, person_id: str, kind: str, subject: str, value: str, channel: str) -> None:
    await conn.execute(
        "INSERT INTO bff.consent_log (person_id, kind, subject, value, channel) VALUES ($1, $2, $3, $4, $5)",
        person_id,
        kind,
        subject,
        value,
        channel,
    )


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def register_device(
        self, conn: Any, person_id: str, token: str, platform: str, app_version: str | None, channel: str
    ) -> bool:
        """A token for this person (taken over from anyone who had it before); True if new or revived."""
        changed = await conn.fetchval(
            """
            INSERT INTO bff.push_devices (token, person_id, platform, app_version) VALUES ($1, $2, $3, $4)
            ON CONFLICT (token) DO UPDATE SET person_id = excluded.person_id, platform = excluded.platform,
                app_version = excluded.app_version, registered_at = now(), pruned_at = NULL, pruned_reason = NULL
            RETURNING (xmax = 0) AS inserted
            """,
            token,
            person_id,
            platform,
            app_version,
        )
        await _log(conn, person_id, "device", platform, "registered", channel)
        return bool(changed)

    async def record_choices(
        self, conn: Any, person_id: str, openid: str, results: Mapping[str, str], channel: str
    ) -> list[dict[str, Any]]:
        """The results of one `wx.requestSubscribeMessage`: a one-time accept adds one message, a
        long-term accept allows many; reject and ban take what was granted; filter changes nothing."""
        for template_id, result in results.items():
            long_term = template_id in LONG_TERM_TEMPLATES
            await conn.execute(
                """
                INSERT INTO bff.wechat_consents (openid, template_id, person_id, last_result, long_term, remaining)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (openid, template_id) DO UPDATE SET
                    person_id = excluded.person_id,
                    last_result = CASE WHEN excluded.last_result = 'filter'
                                       THEN bff.wechat_consents.last_result ELSE excluded.last_result END,
                    long_term = CASE WHEN excluded.last_result = 'filter' THEN bff.wechat_consents.long_term
                                     ELSE excluded.long_term END,
                    remaining = CASE WHEN excluded.last_result IN ('reject', 'ban') THEN 0
                                     ELSE bff.wechat_consents.remaining + excluded.remaining END,
                    updated_at = now()
                """,
                openid,
                template_id,
                person_id,
                result,
                long_term and result == "accept",
                1 if result == "accept" and not long_term else 0,
            )
            await _log(conn, person_id, "wechat_subscribe", template_id, result, channel)
        rows = await conn.fetch(
            """
            SELECT template_id, last_result, long_term, remaining, updated_at FROM bff.wechat_consents
            WHERE openid = $1 ORDER BY template_id
            """,
            openid,
        )
        return [dict(r) for r in rows]

    async def preferences(self, conn: Any, person_id: str) -> Preferences:
        settings = await conn.fetchrow(
            "SELECT lang, quiet_start, quiet_end FROM bff.notification_settings WHERE person_id = $1",
            person_id,
        )
        matrix: dict[str, dict[str, bool]] = {c: {ch: True for ch in CHANNELS} for c in CATEGORIES}
        for r in await conn.fetch(
            "SELECT category, channel, enabled FROM bff.notification_preferences WHERE person_id = $1",
            person_id,
        ):
            if r["category"] in matrix and r["channel"] in CHANNELS:
                matrix[r["category"]][r["channel"]] = r["enabled"]
        for category, ch in LOCKED:
            matrix[category][ch] = True
        return Preferences(
            lang=settings["lang"] if settings else "zh",
            quiet_start=settings["quiet_start"] if settings else None,
            quiet_end=settings["quiet_end"] if settings else None,
            matrix=matrix,
        )

    async def set_preferences(
        self,
        conn: Any,
        person_id: str,
        *,
        lang: str,
        quiet_start: time | None,
        quiet_end: time | None,
        matrix: Mapping[str, Mapping[str, bool]],
        channel: str,
    ) -> Preferences:
        """Replace the preferences; each switch that changes is logged. Locked switches stay on."""
        before = await self.preferences(conn, person_id)
        await conn.execute(
            """
            INSERT INTO bff.notification_settings (person_id, lang, quiet_start, quiet_end) VALUES ($1, $2, $3, $4)
            ON CONFLICT (person_id) DO UPDATE SET lang = excluded.lang, quiet_start = excluded.quiet_start,
                quiet_end = excluded.quiet_end, updated_at = now()
            """,
            person_id,
            lang,
            quiet_start,
            quiet_end,
        )
        if (before.quiet_start, before.quiet_end) != (quiet_start, quiet_end):
            value = f"{quiet_start}-{quiet_end}" if quiet_start and quiet_end else "off"
            await _log(conn, person_id, "quiet_hours", "all", value, channel)
        if before.lang != lang:
            await _log(conn, person_id, "language", "all", lang, channel)
        for category, switches in matrix.items():
            for ch, enabled in switches.items():
                if (category, ch) in LOCKED or before.matrix[category][ch] == enabled:
                    continue
                await conn.execute(
                    """
                    INSERT INTO bff.notification_preferences (person_id, category, channel, enabled)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (person_id, category, channel) DO UPDATE SET enabled = excluded.enabled,
                        updated_at = now()
                    """,
                    person_id,
                    category,
                    ch,
                    enabled,
                )
                await _log(
                    conn, person_id, "preference", f"{category}/{ch}", "on" if enabled else "off", channel
                )
        return await self.preferences(conn, person_id)
