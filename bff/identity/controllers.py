"""Identity routes. Thin: parse, call `auth`, shape the answer; every rule lives in `auth`."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from adapters.errors import ProblemError
from adapters.pii import mask_id_number, mask_phone
from auth import (
    app_login,
    audit,
    kiosk_login,
    kiosks,
    logout,
    persons,
    refresh,
    sessions,
    wechat_login,
)
from auth.device import kiosk_signed, kiosk_signed_if_sent, signed_kiosk
from auth.guards import authenticated, channels, residents_only, staff_only
from auth.issue import Tokens
from auth.kiosk_login import KioskLogin
from auth.principal import Principal
from auth.runtime import AuthRuntime
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.identity import service
from bff.identity.schemas import (
    AppLoginBody,
    BindingResponse,
    DisplayPreferences,
    DisplayPreferencesIn,
    FaceFinishBody,
    FaceStartResponse,
    KioskAttackView,
    KioskRegisterBody,
    KioskView,
    LogoutBody,
    LogoutResponse,
    MeResponse,
    RefreshBody,
    SessionInfo,
    SessionList,
    SessionView,
    TokenResponse,
    WeChatLoginBody,
    WeChatPhoneBody,
)

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "-"


def _tokens(tokens: Tokens) -> TokenResponse:
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        session_id=tokens.session.id,
        person_id=tokens.session.person_id,
        channel=tokens.session.channel,
        level=tokens.session.level,
    )


_NO_STORE = {"Cache-Control": "no-store"}


class AuthController(Controller):
    path = "/auth"
    tags = ["identity"]

    @post(
        "/wechat/login", status_code=200, summary="Mini-program: wx.login code -> tokens or bindingRequired"
    )
    async def wechat_login(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        data: Annotated[WeChatLoginBody, Body()],
    ) -> Response[TokenResponse | BindingResponse]:
        result = await wechat_login.login(auth, data.code, ip=_ip(request), now=_now())
        if isinstance(result, wechat_login.BindingRequired):
            return Response(BindingResponse(result.binding_token, result.expires_in), headers=_NO_STORE)
        return Response(_tokens(result), headers=_NO_STORE)

    @post("/wechat/phone", status_code=200, summary="Mini-program: bind via a getPhoneNumber code")
    async def wechat_phone(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        data: Annotated[WeChatPhoneBody, Body()],
    ) -> Response[TokenResponse]:
        tokens = await wechat_login.bind_phone(
            auth, data.binding_token, data.code, ip=_ip(request), now=_now()
        )
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post(
        "/wechat/face/start",
        status_code=200,
        guards=[channels("miniprogram")],
        summary="Mini-program: start face verification (step-up to L3)",
    )
    async def face_start(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> FaceStartResponse:
        started = await wechat_login.face_start(auth, principal)
        return FaceStartResponse(started.verify_id, started.expires_in)

    @post(
        "/wechat/face/finish",
        status_code=200,
        guards=[channels("miniprogram")],
        summary="Mini-program: confirm face verification; the session becomes L3",
    )
    async def face_finish(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: Annotated[FaceFinishBody, Body()],
    ) -> Response[TokenResponse]:
        tokens = await wechat_login.face_finish(auth, principal, data.verify_id)
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post("/app/login", status_code=200, summary="App: OIDC authorisation code + PKCE verifier -> tokens")
    async def app_login(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        data: Annotated[AppLoginBody, Body()],
    ) -> Response[TokenResponse]:
        device = request.headers.get("x-device-id")
        tokens = await app_login.login(
            auth,
            code=data.code,
            code_verifier=data.code_verifier,
            redirect_uri=data.redirect_uri,
            ip=_ip(request),
            device=device[:64] if device else None,
            now=_now(),
        )
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post(
        "/kiosk/login",
        status_code=200,
        summary="Kiosk: a signed ID-card read and face match -> a short kiosk session",
        guards=[kiosk_signed],
    )
    async def kiosk_login(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        data: Annotated[KioskLogin, Body()],
    ) -> Response[TokenResponse]:
        kiosk_id = signed_kiosk(request)
        assert kiosk_id is not None  # the guard verified it before the body was parsed
        tokens = await kiosk_login.login(auth, kiosk_id, data, ip=_ip(request), now=_now())
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post("/refresh", status_code=200, summary="Rotate a refresh token", guards=[kiosk_signed_if_sent])
    async def refresh(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        data: Annotated[RefreshBody, Body()],
    ) -> Response[TokenResponse]:
        tokens = await refresh.refresh(
            auth, data.refresh_token, ip=_ip(request), kiosk_id=signed_kiosk(request), now=_now()
        )
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post("/logout", status_code=200, guards=[authenticated], summary="End this session, or all of them")
    async def logout(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: Annotated[LogoutBody | None, Body()] = None,
    ) -> LogoutResponse:
        everywhere = bool(data and data.everywhere)
        ended = await logout.logout(auth, principal, everywhere=everywhere, now=_now())
        return LogoutResponse(ended)


def _mask_name(name: str) -> str:
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


class MeController(Controller):
    path = "/me"
    tags = ["identity"]
    guards = [residents_only]

    @get("/", summary="Who I am (personal data masked)")
    async def me(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> MeResponse:
        rt = auth
        person = await persons.load(rt.pool, rt.crypto, principal.person_id)
        if person is None:
            raise ProblemError("no such person", status=404, code="not_found", detail_zh="未找到此人")
        await audit.record(
            rt.pool,
            subject=principal.person_id,
            action="personal_data_read",
            object=f"person:{person.id}",
            result="masked",
            channel=principal.channel,
        )
        return MeResponse(
            person_id=person.id,
            name=_mask_name(person.name),
            id_number=mask_id_number(person.id_number) if person.id_number else None,
            phone=mask_phone(person.phone) if person.phone else None,
            level=person.level,
            session=SessionInfo(principal.session_id, principal.channel, principal.level),
            ui_mode="elder" if person.ui_mode == "elder" else "standard",
        )

    @put("/display-preferences", summary="Save 长辈版 (elder mode) or the standard display, for every device")
    async def put_display(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        idempotency_key: IdempotencyKey,
        data: Annotated[DisplayPreferencesIn, Body()],
    ) -> Response[DisplayPreferences]:
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: service.save_ui_mode(auth.pool, ctx, principal.person_id, data.ui_mode),
        )

    @get("/sessions", summary="My live sessions on every channel")
    async def my_sessions(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> SessionList:
        rows = await sessions.live_for(auth.pool, principal.person_id, now=_now())
        return SessionList(
            items=[
                SessionView(
                    id=str(r["id"]),
                    channel=r["channel"],
                    level=r["level"],
                    device=r["device"],
                    created_at=r["created_at"],
                    last_used_at=r["last_used_at"],
                    expires_at=min(r["idle_expires_at"], r["absolute_expires_at"]),
                    current=str(r["id"]) == principal.session_id,
                )
                for r in rows
            ]
        )

    @delete("/sessions/{session_id:uuid}", status_code=204, summary="End one of my sessions")
    async def end_session(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        session_id: FromPath[Any],
    ) -> None:
        if not await logout.end_session(auth, principal, str(session_id), now=_now()):
            raise ProblemError(
                "no such live session of yours",
                status=404,
                code="not_found",
                detail_zh="没有您的这个有效会话",
            )


@get("/.well-known/jwks.json", tags=["identity"], summary="Public keys of access tokens (incl. the next one)")
async def jwks(auth: NamedDependency[AuthRuntime]) -> Response[dict[str, Any]]:
    return Response(
        auth.tokens.ring.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )


class StaffKioskController(Controller):
    path = "/staff/kiosks"
    tags = ["staff"]
    guards = [staff_only]

    @post("/", status_code=201, summary="Register a kiosk and its public key")
    async def register(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: Annotated[KioskRegisterBody, Body()],
    ) -> KioskView:
        try:
            public_key = base64.b64decode(data.public_key, validate=True)
        except (binascii.Error, ValueError):
            raise ProblemError(
                "publicKey: not base64",
                status=400,
                code="validation_failed",
                detail_zh="publicKey：不是 base64",
            ) from None
        await kiosks.register(
            auth,
            principal,
            kiosk_id=data.kiosk_id,
            name=data.name,
            hall_id=data.hall_id,
            algorithm=data.algorithm,
            public_key=public_key,
        )
        return KioskView(data.kiosk_id, data.name, data.hall_id, data.algorithm, "active")

    @get("/", summary="Registered kiosks")
    async def list_kiosks(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> list[KioskView]:
        rows = await kiosks.list_all(auth)
        return [KioskView(r.id, r.name, r.hall_id, r.algorithm, r.status) for r in rows]

    @get("/attacks", summary="Kiosks under attack: many refused logins lately, cards locked there")
    async def attacks(
        self,
        auth: NamedDependency[AuthRuntime],
        principal: NamedDependency[Principal],
        minutes: Annotated[int, QueryParameter(ge=1, le=1440)] = 60,
        threshold: Annotated[int, QueryParameter(ge=1, le=10_000)] = 5,
    ) -> list[KioskAttackView]:
        rows = await kiosks.under_attack(auth, minutes=minutes, threshold=threshold)
        return [
            KioskAttackView(r.kiosk_id, r.failures, r.locked_cards, r.last_failure_at.isoformat())
            for r in rows
        ]

    @post("/{kiosk_id:str}/revoke", status_code=200, summary="Revoke a kiosk; its sessions end at once")
    async def revoke(
        self,
        auth: NamedDependency[AuthRuntime],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        kiosk_id: FromPath[str],
    ) -> LogoutResponse:
        ended = await kiosks.revoke(auth, principal, kiosk_id, now=_now())
        return LogoutResponse(ended)
