"""Authentication and the guards every protected route uses.

`authenticate` verifies the Bearer access token once per request (signature and claims locally,
then the deny-list: one Redis MGET, or this process's memory of the token kept exact by
pub/sub, see `auth.denylist`) and, for kiosk sessions, the device signature of this
very request: a kiosk token is useless away from its kiosk. The result is kept in the ASGI scope,
so the `principal` dependency and any number of guards share one verification.

Guards: `authenticated`, `min_level(n)`, `channels(...)`, `staff_only`, `residents_only`.
Refusals are 401 (who are you?) or 403 (not allowed) problem documents, and each is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar.connection import ASGIConnection, Request
from litestar.handlers.base import BaseRouteHandler

from adapters import context
from adapters.errors import ProblemError
from auth import acting, audit, denylist, kiosk
from auth.principal import Channel, Principal
from auth.runtime import AuthRuntime
from auth.tokens import TokenError

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]
_SCOPE_KEY = PRINCIPAL_SCOPE_KEY = "sx_principal"  # the edge reads it: personal responses are no-store

STEP_UP: dict[str, dict[str, str]] = {
    "miniprogram": {
        "method": "wechat_face_verification",
        "start": "/api/v1/auth/wechat/face/start",
        "finish": "/api/v1/auth/wechat/face/finish",
    },
    "app": {"method": "idp_reauthentication", "acrValues": "L3"},
    "kiosk": {"method": "kiosk_face_match"},
}


def runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> AuthRuntime:
    value: AuthRuntime = connection.app.state.auth
    return value


def _client_channel(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return "kiosk" if connection.headers.get(kiosk.HEADER_ID) else "-"


async def _audit_refusal(
    connection: ASGIConnection[Any, Any, Any, Any], subject: str, channel: str, result: str
) -> None:
    await audit.record(
        runtime(connection).pool,
        subject=subject,
        action="access_refused",
        object=f"{connection.scope.get('method', '')} {connection.url.path}",
        result=result,
        channel=channel,
        request_id=context.request_id.get(),
    )


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    cached = connection.scope.get(_SCOPE_KEY)  # type: ignore[typeddict-item]
    if isinstance(cached, Principal):
        return cached
    rt = runtime(connection)
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(
            "sign in first: send `Authorization: Bearer <access token>`",
            detail_zh="请先登录（请求需携带 `Authorization: Bearer <访问令牌>`）",
            status=401,
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        claims = rt.tokens.verify(token.strip())
    except TokenError as exc:
        await _audit_refusal(connection, "-", _client_channel(connection), exc.code)
        raise
    denied = (
        await rt.deny.is_denied(claims.jti, claims.sid)
        if rt.deny is not None
        else await denylist.is_denied(rt.redis, claims.jti, claims.sid)
    )
    if denied:
        await _audit_refusal(connection, claims.sub, claims.chn, "token_revoked")
        raise TokenError("the session has ended; sign in again", "token_revoked", zh="会话已结束，请重新登录")
    if claims.chn == "kiosk":
        request = connection if isinstance(connection, Request) else None
        body = await request.body() if request is not None else b""
        path = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
        try:
            device = await kiosk.verify_request(
                rt.redis,
                rt.pool,
                method=str(connection.scope.get("method", "GET")),
                path=path,
                body=body,
                headers=connection.headers,
                skew_s=rt.config.kiosk_skew_s,
            )
        except ProblemError as exc:
            await _audit_refusal(connection, claims.sub, "kiosk", exc.code)
            raise
        if device != claims.kio:
            await _audit_refusal(connection, claims.sub, "kiosk", "kiosk_mismatch")
            raise ProblemError(
                "this session belongs to another kiosk",
                status=401,
                code="kiosk_mismatch",
                detail_zh="该会话属于另一台自助终端",
            )
    principal = claims.principal()
    mandate_id = connection.headers.get(acting.ACTING_HEADER)
    if mandate_id is not None:
        principal = await _acting_for(connection, rt, principal, mandate_id.strip())
    connection.scope[_SCOPE_KEY] = principal  # type: ignore[literal-required]
    return principal


async def _acting_for(
    connection: ASGIConnection[Any, Any, Any, Any], rt: AuthRuntime, agent: Principal, mandate_id: str
) -> Principal:
    """The principal an agent acts for on this route, or a 403 (audited) saying why not."""
    handler = connection.scope.get("route_handler")
    opt: dict[str, Any] = getattr(handler, "opt", None) or {}
    action = opt.get(acting.OPT_ACTION)
    try:
        if action is None or rt.acting is None or agent.channel == "staff":
            raise acting.refused(opt.get(acting.OPT_REFUSAL, "acting_not_allowed"))
        mandated = await rt.acting.resolve(agent.person_id, mandate_id, action)
    except ProblemError as exc:
        await _audit_refusal(connection, agent.person_id, agent.channel, exc.code)
        raise
    context.acting.set(f"agent={agent.person_id};mandate={mandate_id}")
    # One record per agent's request, whatever the route audits itself: the principal's "who used
    # my data" shows every use of a mandate (subject: the principal; channel: agent and mandate).
    await audit.record(
        rt.pool,
        subject=mandated.principal_id,
        action=f"acting.{action}",
        object=f"{connection.scope.get('method', '')} {connection.url.path}",
        result="allowed",
        channel=agent.channel,
    )
    return msgspec.structs.replace(
        agent,
        person_id=mandated.principal_id,
        agent=agent.person_id,
        mandate_id=mandate_id,
        categories=mandated.categories,
        item_codes=mandated.item_codes,
        roles=(),
    )


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The `principal` dependency."""
    return await authenticate(request)


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    await authenticate(connection)


async def require_principal_if_declared(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """App-wide: a handler that takes `principal` is authenticated before anything else is parsed,
    so a caller without a valid token learns nothing from body validation."""
    if "principal" in handler.parsed_fn_signature.parameters:
        await authenticate(connection)


def min_level(level: int) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if principal.level < level:
            await _audit_refusal(connection, principal.person_id, principal.channel, "step_up_required")
            raise ProblemError(
                f"this needs real-name level L{level}; the session is at L{principal.level}",
                detail_zh=f"此操作需要实名等级 L{level}，当前登录为 L{principal.level}，请先完成身份核验",
                status=403,
                code="step_up_required",
                extra={
                    "requiredLevel": level,
                    "currentLevel": principal.level,
                    "stepUp": STEP_UP.get(principal.channel, {}),
                },
            )

    guard.required_level = level  # type: ignore[attr-defined]  # read by the level matrix and the README
    return guard


# The real-name levels routes demand (README, "Real-name levels"): L1 an account, L2 a verified
# phone or an identity-provider account at L2, L3 face-verified (or ID card + face at a kiosk).
BOOKING_LEVEL = min_level(2)
APPLYING_LEVEL = min_level(3)


def required_level(guards: list[Any]) -> int:
    """The highest level any of `guards` demands (1: signed in is enough)."""
    return max([getattr(g, "required_level", 1) for g in guards], default=1)


def channels(*allowed: Channel) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if principal.channel not in allowed:
            await _audit_refusal(connection, principal.person_id, principal.channel, "channel_not_allowed")
            raise ProblemError(
                f"not available on this channel ({principal.channel})",
                status=403,
                code="channel_not_allowed",
                extra={"allowedChannels": list(allowed)},
                detail_zh=f"该渠道不可用（{principal.channel}）",
            )

    guard.allowed_channels = allowed  # type: ignore[attr-defined]  # read by the OpenAPI contract
    return guard


async def staff_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await authenticate(connection)
    staff_roles = runtime(connection).config.staff_roles
    if principal.channel != "staff" or not set(principal.roles) & set(staff_roles):
        await _audit_refusal(connection, principal.person_id, principal.channel, "staff_only")
        raise ProblemError("staff only", status=403, code="staff_only", detail_zh="仅限工作人员")


async def residents_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await authenticate(connection)
    if principal.channel == "staff":
        await _audit_refusal(connection, principal.person_id, principal.channel, "residents_only")
        raise ProblemError("residents only", status=403, code="residents_only", detail_zh="仅限居民")
