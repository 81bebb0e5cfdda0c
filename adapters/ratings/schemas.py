"""The 好差评 system's wire format."""

from __future__ import annotations

import msgspec


class FollowUp(msgspec.Struct, frozen=True):
    required: bool
    status: str  # pending | called_back | resolved
    due_date: str
    note: str | None = None
    callback_at: str | None = None


class Rating(msgspec.Struct, frozen=True):
    rating_id: str
    service_instance_id: str
    channel: str
    level: int
    indicators: dict[str, int]
    comment: str
    created_at: str
    follow_up: FollowUp | None = None


class Refusal(msgspec.Struct, frozen=True):
    error: str
    message: str = ""
