"""The transactional outbox: every domain tells residents about a change by writing a row here,
in the SAME transaction as the change itself, so a change is never lost nor told without having
happened. A relay (push's worker) publishes rows to the channels later; `dedup_key` makes a
second write of the same event (a webhook and the reconciler both applying it) a no-op.
"""

from __future__ import annotations

from typing import Any

import msgspec

from push.topics import PAYLOADS, Topic


async def enqueue(conn: Any, topic: Topic, person_id: str, dedup_key: str, payload: msgspec.Struct) -> bool:
    """Add one message for `person_id` inside the caller's transaction; False if already there.

    `conn` is the asyncpg connection of the caller's open transaction (a pool would commit the row
    on its own, outside the change it reports)."""
    expected = PAYLOADS[topic]
    if not isinstance(payload, expected):
        raise TypeError(f"topic {topic} carries {expected.__name__}, not {type(payload).__name__}")
    if not conn.is_in_transaction():
        raise RuntimeError("push.outbox.enqueue must run inside the transaction of the change it reports")
    inserted = await conn.fetchval(
        """
        INSERT INTO bff.outbox (topic, person_id, dedup_key, payload)
        VALUES ($1, $2, $3, $4) ON CONFLICT (dedup_key) DO NOTHING RETURNING 1
        """,
        topic,
        person_id,
        dedup_key,
        msgspec.to_builtins(payload),
    )
    return inserted is not None
