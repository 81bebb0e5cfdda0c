"""好差评 requests and responses."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "already_rated": (409, "该办件已评价", "This case has already been rated"),
        "indicators_invalid": (
            422,
            "评价指标不符合规定",
            "The indicators do not match the channel's fixed set",
        ),
        "case_not_concluded": (409, "办件尚未办结，暂不能评价", "The case is not concluded yet"),
    },
)

Level = Annotated[int, msgspec.Meta(ge=1, le=5)]


class RatingIn(CamelIn):
    level: Level
    indicators: dict[str, Level]
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


class FollowUpOut(Camel):
    required: bool
    status: str
    due_date: str
    note: str | None
    callback_at: str | None


class RatingOut(Camel):
    id: str
    case_id: str
    channel: Literal["online", "hall"]
    level: int
    level_name: str
    indicators: dict[str, int]
    comment: str
    created_at: str
    follow_up: FollowUpOut | None
    follow_up_status: Literal["ok", "unavailable"] = "ok"
