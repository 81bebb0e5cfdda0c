"""Identity routes. Thin: parse, call `auth`, shape the answer; every rule lives in `auth`."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from adapters.errors import ProblemError
from adapters.pii import mask_id_number, mask_phone
from auth import (
    app_login,
    audit,
    kiosk,
    kiosk_login,
    kiosks,
    logout,
    persons,
    refresh,
    sessions,
    wechat_login,
)
from auth.guards import authenticated, channels, residents_only, runtime, staff_only
from auth.issue import Tokens
from auth.principal import Principal
from auth.runtime import AuthRuntime
from bff.identity.schemas import (
    AppLoginBody,
    BindingResponse,
    FaceFinishBody,
    FaceStartResponse,
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
from bff.platform.problems import register_titles

register_titles(
    {
        "token_invalid": ("登录凭证无效，请重新登录", "The access token is not valid"),
        "token_expired": ("登录已过期，请刷新或重新登录", "The access token has expired"),
        "token_revoked": ("登录已失效，请重新登录", "The session has ended"),
        "step_up_required": ("需要更高的实名认证等级", "A higher real-name level is required"),
        "channel_not_allowed": ("该渠道不支持此功能", "Not available on this channel"),
        "staff_only": ("仅限工作人员", "Staff only"),
        "residents_only": ("仅限群众用户", "Residents only"),
        "wechat_code_invalid": ("微信登录凭证无效，请重试", "The WeChat code is invalid"),
        "wechat_high_risk": ("该微信账号存在风险，暂不能登录", "WeChat flagged this account"),
        "binding_token_invalid": ("绑定已过期，请重新登录", "The binding has expired"),
        "identity_not_found": ("未找到实名身份，请先完成实名注册", "No real-name identity found"),
        "identity_conflict": ("该身份已被其他账号使用", "Identity already used by another account"),
        "idp_code_invalid": ("统一身份认证授权无效，请重试", "The authorisation was not accepted"),
        "refresh_token_invalid": ("刷新凭证无效，请重新登录", "The refresh token is not valid"),
        "refresh_token_reused": ("检测到凭证重复使用，已退出登录", "Refresh token reuse: signed out"),
        "session_revoked": ("登录已失效，请重新登录", "The session has ended"),
        "session_expired": ("登录已过期，请重新登录", "The session has expired"),
        "locked_out": ("失败次数过多，请稍后再试", "Too many failed attempts"),
        "kiosk_signature_required": ("自助终端请求未签名", "Kiosk requests must be signed"),
        "kiosk_signature_invalid": ("自助终端签名无效", "The kiosk signature is invalid"),
        "kiosk_request_stale": ("自助终端请求已过期", "The kiosk request is stale"),
        "kiosk_replay": ("重复的自助终端请求", "Replayed kiosk request"),
        "kiosk_unknown": ("未登记的自助终端", "Unknown kiosk"),
        "kiosk_revoked": ("该自助终端已停用", "This kiosk has been revoked"),
        "kiosk_mismatch": ("会话不属于该终端", "The session belongs to another kiosk"),
        "kiosk_exists": ("该终端已登记", "Kiosk already registered"),
        "kiosk_not_found": ("未找到该终端", "No such kiosk"),
        "face_match_failed": ("人脸比对未通过", "The face match failed"),
        "face_verification_failed": ("人脸核身未通过", "Face verification failed"),
        "face_verification_not_found": ("人脸核身已过期", "Face verification not found"),
        "face_not_available": ("当前会话无法进行人脸核身", "Face verification not available"),
        "id_card_expired": ("身份证不在有效期内", "The ID card is not valid"),
        "phone_not_supported": ("仅支持中国大陆手机号", "Only mainland numbers"),
    }
)

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "-"


def _decode(raw: bytes, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise ProblemError(str(exc), status=400, code="validation_failed") from None
    except msgspec.DecodeError:
        raise ProblemError("the body is not valid JSON", status=400, code="validation_failed") from None


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


async def _signed_kiosk(rt: AuthRuntime, request: Request[Any, Any, Any], body: bytes) -> str:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await kiosk.verify_request(
        rt.redis,
        rt.pool,
        method=request.method,
        path=path,
        body=body,
        headers=request.headers,
        skew_s=rt.config.kiosk_skew_s,
    )


class AuthController(Controller):
    path = "/auth"
    tags = ["identity"]

    @post(
        "/wechat/login", status_code=200, summary="Mini-program: wx.login code -> tokens or bindingRequired"
    )
    async def wechat_login(
        self, request: Request[Any, Any, Any], data: Annotated[WeChatLoginBody, Body()]
    ) -> Response[TokenResponse | BindingResponse]:
        result = await wechat_login.login(runtime(request), data.code, ip=_ip(request), now=_now())
        if isinstance(result, wechat_login.BindingRequired):
            return Response(BindingResponse(result.binding_token, result.expires_in), headers=_NO_STORE)
        return Response(_tokens(result), headers=_NO_STORE)

    @post("/wechat/phone", status_code=200, summary="Mini-program: bind via a getPhoneNumber code")
    async def wechat_phone(
        self, request: Request[Any, Any, Any], data: Annotated[WeChatPhoneBody, Body()]
    ) -> Response[TokenResponse]:
        tokens = await wechat_login.bind_phone(
            runtime(request), data.binding_token, data.code, ip=_ip(request), now=_now()
        )
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post(
        "/wechat/face/start",
        status_code=200,
        guards=[channels("miniprogram")],
        summary="Mini-program: start face verification (step-up to L3)",
    )
    async def face_start(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> FaceStartResponse:
        started = await wechat_login.face_start(runtime(request), principal)
        return FaceStartResponse(started.verify_id, started.expires_in)

    @post(
        "/wechat/face/finish",
        status_code=200,
        guards=[channels("miniprogram")],
        summary="Mini-program: confirm face verification; the session becomes L3",
    )
    async def face_finish(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: Annotated[FaceFinishBody, Body()],
    ) -> Response[TokenResponse]:
        tokens = await wechat_login.face_finish(runtime(request), principal, data.verify_id)
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post("/app/login", status_code=200, summary="App: OIDC authorisation code + PKCE verifier -> tokens")
    async def app_login(
        self, request: Request[Any, Any, Any], data: Annotated[AppLoginBody, Body()]
    ) -> Response[TokenResponse]:
        device = request.headers.get("x-device-id")
        tokens = await app_login.login(
            runtime(request),
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
        request_body=kiosk_login.KioskLogin,
    )
    async def kiosk_login(self, request: Request[Any, Any, Any]) -> Response[TokenResponse]:
        rt = runtime(request)
        # The signature is checked before the body is even parsed.
        raw = await request.body()
        kiosk_id = await _signed_kiosk(rt, request, raw)
        payload = _decode(raw, kiosk_login.KioskLogin)
        tokens = await kiosk_login.login(rt, kiosk_id, payload, ip=_ip(request), now=_now())
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post("/refresh", status_code=200, summary="Rotate a refresh token", request_body=RefreshBody)
    async def refresh(self, request: Request[Any, Any, Any]) -> Response[TokenResponse]:
        rt = runtime(request)
        raw = await request.body()
        kiosk_id = await _signed_kiosk(rt, request, raw) if request.headers.get(kiosk.HEADER_ID) else None
        body = _decode(raw, RefreshBody)
        tokens = await refresh.refresh(rt, body.refresh_token, ip=_ip(request), kiosk_id=kiosk_id, now=_now())
        return Response(_tokens(tokens), headers=_NO_STORE)

    @post("/logout", status_code=200, guards=[authenticated], summary="End this session, or all of them")
    async def logout(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: Annotated[LogoutBody | None, Body()] = None,
    ) -> LogoutResponse:
        everywhere = bool(data and data.everywhere)
        ended = await logout.logout(runtime(request), principal, everywhere=everywhere, now=_now())
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
    async def me(self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> MeResponse:
        rt = runtime(request)
        person = await persons.load(rt.pool, rt.crypto, principal.person_id)
        if person is None:
            raise ProblemError("no such person", status=404, code="not_found")
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
        )

    @get("/sessions", summary="My live sessions on every channel")
    async def my_sessions(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> SessionList:
        rows = await sessions.live_for(runtime(request).pool, principal.person_id, now=_now())
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
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        session_id: FromPath[Any],
    ) -> None:
        if not await logout.end_session(runtime(request), principal, str(session_id), now=_now()):
            raise ProblemError("no such live session of yours", status=404, code="not_found")


@get("/.well-known/jwks.json", tags=["identity"], summary="Public keys of access tokens (incl. the next one)")
async def jwks(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    return Response(
        runtime(request).tokens.ring.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )


class StaffKioskController(Controller):
    path = "/staff/kiosks"
    tags = ["staff"]
    guards = [staff_only]

    @post("/", status_code=201, summary="Register a kiosk and its public key")
    async def register(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: Annotated[KioskRegisterBody, Body()],
    ) -> KioskView:
        try:
            public_key = base64.b64decode(data.public_key, validate=True)
        except (binascii.Error, ValueError):
            raise ProblemError("publicKey: not base64", status=400, code="validation_failed") from None
        await kiosks.register(
            runtime(request),
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
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> list[KioskView]:
        rows = await runtime(request).pool.fetch(
            "SELECT id, name, hall_id, algorithm, status FROM bff.kiosks ORDER BY id LIMIT 500"
        )
        return [KioskView(r["id"], r["name"], r["hall_id"], r["algorithm"], r["status"]) for r in rows]

    @post("/{kiosk_id:str}/revoke", status_code=200, summary="Revoke a kiosk; its sessions end at once")
    async def revoke(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], kiosk_id: FromPath[str]
    ) -> LogoutResponse:
        ended = await kiosks.revoke(runtime(request), principal, kiosk_id, now=_now())
        return LogoutResponse(ended)
