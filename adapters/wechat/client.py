"""The async WeChat client: login code exchange, phone numbers, face verification, access token.

Every call goes through the shared resilience layer. None is retried blindly: login and phone codes
are single-use, so a retry after a lost answer would only turn success into 40029.
"""

from __future__ import annotations

import base64
import hashlib

from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.http import Upstream
from adapters.wechat.schemas import (
    CodeSession,
    PhoneNumberReply,
    StableToken,
    SubscribeSent,
    VerifyIdReply,
    VerifyInfoReply,
)
from adapters.wechat.token import AccessTokenCache

_TOKEN_REJECTED = frozenset({40001, 42001, 40014})


class WeChatError(ProblemError):
    """A WeChat `errcode`, mapped to what the client should do about it."""

    def __init__(
        self, errcode: int, detail: str, *, zh: str, status: int, code: str, retry_after: int | None = None
    ):
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        super().__init__(
            detail, status=status, code=code, headers=headers, extra={"wechatErrcode": errcode}, detail_zh=zh
        )
        self.errcode = errcode


def _login_error(errcode: int) -> WeChatError:
    if errcode in (40029, 40163):
        return WeChatError(
            errcode,
            "the login code is invalid or already used",
            zh="登录码无效或已被使用",
            status=401,
            code="wechat_code_invalid",
        )
    if errcode == 45011:
        return WeChatError(
            errcode,
            "WeChat limits logins for this user, try again shortly",
            zh="微信限制了该用户的登录，请稍后再试",
            status=429,
            code="rate_limited",
            retry_after=60,
        )
    if errcode == 40226:
        return WeChatError(
            errcode,
            "WeChat flagged this account as high risk",
            zh="微信将该账号标记为高风险",
            status=403,
            code="wechat_high_risk",
        )
    return WeChatError(
        errcode, "WeChat refused the request", zh="微信拒绝了该请求", status=502, code="bad_upstream_answer"
    )


def cert_hash(cert_type: str, cert_name: str, cert_no: str) -> str:
    """The `cert_hash` queryverifyinfo wants: the certificate fields as a query string, SHA-256, base64."""
    text = f"cert_type={cert_type}&cert_name={cert_name}&cert_no={cert_no}"
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


class WeChatClient:
    def __init__(self, upstream: Upstream, appid: str, secret: str) -> None:
        self.upstream = upstream
        self.appid = appid
        self._secret = secret
        self.tokens: AccessTokenCache | None = None

    def use_token_cache(self, cache: AccessTokenCache) -> None:
        self.tokens = cache

    async def fetch_stable_token(self, force_refresh: bool) -> tuple[str, int]:
        reply = await self.upstream.call(
            "POST",
            "/cgi-bin/stable_token",
            json={
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self._secret,
                "force_refresh": force_refresh,
            },
            idempotent=True,  # stable_token without force_refresh returns the same token
        )
        answer = self.upstream.decode(reply, StableToken)
        if answer.errcode or not answer.access_token:
            raise BadUpstreamAnswer(
                f"wechat stable_token failed ({answer.errcode})",
                detail_zh=f"微信 stable_token 失败（{answer.errcode}）",
            )
        return answer.access_token, answer.expires_in

    async def code_to_session(self, code: str) -> CodeSession:
        # jscode2session needs no access token (wechatpy fetches one anyway; we do not).
        reply = await self.upstream.call(
            "GET",
            "/sns/jscode2session",
            params={
                "appid": self.appid,
                "secret": self._secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
            idempotent=False,
        )
        answer = self.upstream.decode(reply, CodeSession)
        if answer.errcode:
            raise _login_error(answer.errcode)
        if not answer.openid or not answer.session_key:
            self.upstream.record_malformed()
            raise BadUpstreamAnswer(
                "wechat jscode2session answered without an openid",
                detail_zh="微信 jscode2session 应答中没有 openid",
            )
        return answer

    async def _with_token(self, path: str, body: dict[str, object], type_: type[object]) -> object:
        assert self.tokens is not None, "WeChatClient needs a token cache for this call"
        token = await self.tokens.get()
        for attempt in range(2):
            reply = await self.upstream.call(
                "POST", path, json=body, params={"access_token": token}, idempotent=False
            )
            answer = self.upstream.decode(reply, type_)
            errcode = getattr(answer, "errcode", 0)
            if errcode in _TOKEN_REJECTED and attempt == 0:
                token = await self.tokens.get(refresh_if=token)
                continue
            return answer
        raise BadUpstreamAnswer(
            "wechat rejected a freshly refreshed access token", detail_zh="微信拒绝了刚刷新的 access token"
        )

    async def send_subscribe_message(
        self,
        *,
        openid: str,
        template_id: str,
        data: dict[str, dict[str, str]],
        page: str | None = None,
        lang: str = "zh_CN",
        state: str = "formal",
    ) -> SubscribeSent:
        """One subscribe message (订阅消息). WeChat takes no send key: a repeat sends again, so the
        caller records the attempt before calling and never repeats one whose outcome is unknown
        (this call is never retried; an exception here means "maybe sent")."""
        body: dict[str, object] = {
            "touser": openid,
            "template_id": template_id,
            "data": data,
            "miniprogram_state": state,
            "lang": lang,
        }
        if page:
            body["page"] = page
        answer = await self._with_token("/cgi-bin/message/subscribe/send", body, SubscribeSent)
        assert isinstance(answer, SubscribeSent)
        return answer

    async def phone_number(self, code: str) -> str:
        answer = await self._with_token("/wxa/business/getuserphonenumber", {"code": code}, PhoneNumberReply)
        assert isinstance(answer, PhoneNumberReply)
        if answer.errcode in (40029, 40163):
            raise WeChatError(
                answer.errcode,
                "the phone-number code is invalid or already used",
                zh="手机号授权码无效或已被使用",
                status=401,
                code="wechat_code_invalid",
            )
        if answer.errcode or answer.phone_info is None:
            raise WeChatError(
                answer.errcode,
                "WeChat refused the phone-number request",
                zh="微信拒绝了获取手机号的请求",
                status=502,
                code="bad_upstream_answer",
            )
        if answer.phone_info.country_code != "86":
            raise ProblemError(
                "only mainland mobile numbers can be bound",
                status=422,
                code="phone_not_supported",
                detail_zh="只能绑定中国大陆手机号",
            )
        return answer.phone_info.pure_phone_number

    async def face_verify_id(
        self, *, openid: str, out_seq_no: str, cert_name: str, cert_no: str
    ) -> tuple[str, int]:
        body: dict[str, object] = {
            "out_seq_no": out_seq_no,
            "cert_info": {"cert_type": "IDENTITY_CARD", "cert_name": cert_name, "cert_no": cert_no},
            "openid": openid,
        }
        answer = await self._with_token("/cityservice/face/identify/getverifyid", body, VerifyIdReply)
        assert isinstance(answer, VerifyIdReply)
        if answer.errcode or not answer.verify_id:
            raise WeChatError(
                answer.errcode,
                "WeChat could not start face verification",
                zh="微信无法发起人脸核验",
                status=502,
                code="bad_upstream_answer",
            )
        return answer.verify_id, answer.expires_in

    async def face_verify_result(
        self, *, openid: str, verify_id: str, out_seq_no: str, cert_name: str, cert_no: str
    ) -> int:
        body: dict[str, object] = {
            "verify_id": verify_id,
            "out_seq_no": out_seq_no,
            "cert_hash": cert_hash("IDENTITY_CARD", cert_name, cert_no),
            "openid": openid,
        }
        answer = await self._with_token("/cityservice/face/identify/queryverifyinfo", body, VerifyInfoReply)
        assert isinstance(answer, VerifyInfoReply)
        if answer.errcode:
            raise WeChatError(
                answer.errcode,
                "WeChat could not confirm the face verification",
                zh="微信无法确认人脸核验结果",
                status=422,
                code="face_verification_failed",
            )
        return answer.verify_ret
