"""Object-level access shared by the appointment, case, upload and rating routes.

Another resident's object answers exactly like a missing one (404: ids are not confirmed to
exist), and the attempt is written to the audit log as an authorisation failure.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from adapters.errors import ProblemError
from auth import audit
from auth.principal import Principal
from bff.platform.logs import get_logger
from bff.platform.problems import define

log = get_logger("bff.access")

define(
    __name__,
    {
        "appointment_not_found": (404, "未找到该预约", "No such appointment"),
        "case_not_found": (404, "未找到该办件", "No such case"),
        "upload_not_found": (404, "未找到该文件", "No such upload"),
        "rating_not_found": (404, "未找到该评价", "No such rating"),
    },
)


async def owned(
    pool: asyncpg.Pool,
    principal: Principal,
    kind: str,
    object_id: str,
    row: asyncpg.Record | None,
) -> asyncpg.Record:
    """`row` (which has a `person_id`) when it belongs to the caller; otherwise a 404 problem."""
    if row is not None and row["person_id"] == principal.person_id:
        return row
    if row is not None:
        await audit.record(
            pool,
            subject=principal.person_id,
            action=f"{kind}.access",
            object=f"{kind}:{object_id}",
            result="denied_not_owner",
            channel=principal.channel,
        )
        log.warning("object_access_denied", kind=kind)
    raise ProblemError(
        f"no {kind} {object_id}",
        status=404,
        code=f"{kind}_not_found",
        detail_zh=f"未找到{_KIND_ZH.get(kind, kind)} {object_id}",
    )


# The objects residents are refused in Chinese by name.
_KIND_ZH = {
    "address": "地址",
    "appointment": "预约",
    "case": "办件",
    "delivery": "寄递",
    "life_application": "一件事申请",
    "message": "消息",
    "payment": "缴费",
    "rating": "评价",
    "upload": "上传文件",
}


def parse_uuid(value: str, kind: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise ProblemError(
            f"no {kind} {value[:64]}",
            status=404,
            code=f"{kind}_not_found",
            detail_zh=f"未找到{_KIND_ZH.get(kind, kind)} {value[:64]}",
        ) from None
