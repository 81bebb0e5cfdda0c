"""Request and response bodies of the identity routes (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn
from bff.platform.uimode import UiMode

# The codes auth/ answers with (auth may not import bff, so they are defined here).
define(
    __name__,
    {
        "token_invalid": (401, "登录凭证无效，请重新登录", "The access token is not valid"),
        "token_expired": (401, "登录已过期，请刷新或重新登录", "The access token has expired"),
        "token_revoked": (401, "登录已失效，请重新登录", "The session has ended"),
        "step_up_required": (403, "需要更高的实名认证等级", "A higher real-name level is required"),
        "channel_not_allowed": (403, "该渠道不支持此功能", "Not available on this channel"),
        "staff_only": (403, "仅限工作人员", "Staff only"),
        "residents_only": (403, "仅限群众用户", "Residents only"),
        # 代办 (auth/acting.py): an agent's X-Acting-For refused.
        "acting_not_allowed": (403, "该操作不能代他人办理", "This cannot be done for someone else"),
        "mandate_chain": (403, "代办人不能转授权", "An agent cannot pass a mandate on"),
        "mandate_unknown": (403, "没有这项代办授权", "No such mandate held by you"),
        "mandate_out_of_scope": (403, "超出代办授权范围", "Outside the mandate's scope"),
        "mandate_expired": (403, "代办授权已过期", "The mandate has expired"),
        "mandate_revoked": (403, "代办授权已撤销", "The mandate was revoked"),
        "mandate_not_accepted": (403, "代办授权尚未接受", "The mandate has not been accepted"),
        "mandate_pending_proof": (403, "监护关系尚待核验", "The guardianship is not yet proven"),
        "wechat_code_invalid": (401, "微信登录凭证无效，请重试", "The WeChat code is invalid"),
        "wechat_high_risk": (403, "该微信账号存在风险，暂不能登录", "WeChat flagged this account"),
        "binding_token_invalid": (401, "绑定已过期，请重新登录", "The binding has expired"),
        "identity_not_found": (404, "未找到实名身份，请先完成实名注册", "No real-name identity found"),
        "identity_conflict": (409, "该身份已被其他账号使用", "Identity already used by another account"),
        "idp_code_invalid": (401, "统一身份认证授权无效，请重试", "The authorisation was not accepted"),
        "refresh_token_invalid": (401, "刷新凭证无效，请重新登录", "The refresh token is not valid"),
        "refresh_token_reused": (401, "检测到凭证重复使用，已退出登录", "Refresh token reuse: signed out"),
        "session_revoked": (401, "登录已失效，请重新登录", "The session has ended"),
        "session_expired": (401, "登录已过期，请重新登录", "The session has expired"),
        "locked_out": (429, "失败次数过多，请稍后再试", "Too many failed attempts"),
        "kiosk_signature_required": (401, "自助终端请求未签名", "Kiosk requests must be signed"),
        "kiosk_signature_invalid": (401, "自助终端签名无效", "The kiosk signature is invalid"),
        "kiosk_request_stale": (401, "自助终端请求已过期", "The kiosk request is stale"),
        "kiosk_replay": (401, "重复的自助终端请求", "Replayed kiosk request"),
        "kiosk_unknown": (401, "未登记的自助终端", "Unknown kiosk"),
        "kiosk_revoked": (403, "该自助终端已停用", "This kiosk has been revoked"),
        "kiosk_mismatch": (401, "会话不属于该终端", "The session belongs to another kiosk"),
        "kiosk_exists": (409, "该终端已登记", "Kiosk already registered"),
        "kiosk_not_found": (404, "未找到该终端", "No such kiosk"),
        "face_match_failed": (401, "人脸比对未通过", "The face match failed"),
        "face_verification_failed": (422, "人脸核身未通过", "Face verification failed"),
        "face_verification_not_found": (404, "人脸核身已过期", "Face verification not found"),
        "face_not_available": (409, "当前会话无法进行人脸核身", "Face verification not available"),
        "id_card_expired": (422, "身份证不在有效期内", "The ID card is not valid"),
        "phone_not_supported": (422, "仅支持中国大陆手机号", "Only mainland numbers"),
    },
)

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Opaque = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class WeChatLoginBody(CamelIn):
    code: Code


class WeChatPhoneBody(CamelIn):
    code: Code
    binding_token: Opaque


class AppLoginBody(CamelIn):
    code: Code
    code_verifier: Annotated[str, msgspec.Meta(min_length=43, max_length=128)]
    redirect_uri: Annotated[str, msgspec.Meta(min_length=8, max_length=512, pattern=r"^https?://")]


class RefreshBody(CamelIn):
    refresh_token: Opaque


class LogoutBody(CamelIn):
    everywhere: bool = False


class FaceFinishBody(CamelIn):
    verify_id: Opaque


class TokenResponse(Camel):
    access_token: str
    expires_in: int
    session_id: str
    person_id: str
    channel: str
    level: int
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    binding_required: bool = False


class BindingResponse(Camel):
    binding_token: str
    expires_in: int
    binding_required: bool = True


class FaceStartResponse(Camel):
    verify_id: str
    expires_in: int


class LogoutResponse(Camel):
    ended_sessions: int


class SessionInfo(Camel):
    id: str
    channel: str
    level: int


class MeResponse(Camel):
    person_id: str
    name: str
    id_number: str | None
    phone: str | None
    level: int
    session: SessionInfo
    # 长辈版 saved for every device: the app and the mini-program send it as `X-UI-Mode`.
    ui_mode: UiMode = "standard"


class DisplayPreferences(Camel):
    ui_mode: UiMode


class DisplayPreferencesIn(CamelIn):
    ui_mode: UiMode


class SessionView(Camel):
    id: str
    channel: str
    level: int
    device: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class SessionList(Camel):
    items: list[SessionView]
    next_cursor: str | None = None


class KioskRegisterBody(CamelIn):
    kiosk_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{3,64}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    hall_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]  # base64 of the raw key
    algorithm: str = "ed25519"


class KioskView(Camel):
    kiosk_id: str
    name: str
    hall_id: str
    algorithm: str
    status: str


class KioskAttackView(Camel):
    """A kiosk with many refused logins lately: no kiosk is locked, so the hall's staff look."""

    kiosk_id: str
    failures: int
    locked_cards: int
    last_failure_at: str
