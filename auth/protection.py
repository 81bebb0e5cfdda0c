"""Brute-force protection for login, binding and refresh: rate limits and lockouts per key.

Keys name what is being protected: `ip:<addr>`, `openid:<id>`, `phone:<blind index>`,
`device:<id>`, `idnum:<blind index>`. Phone numbers and ID numbers only ever appear as their
blind index, so Redis holds no personal data either.

Every key is rate-limited; lockouts apply to accounts and devices only, never to an IP address:
many residents share one address behind a hall's or a carrier's NAT, and locking it would let one
person lock out everybody else there.
"""

from __future__ import annotations

import re

from adapters import context
from adapters.errors import ProblemError
from auth import audit, ratelimit
from auth.runtime import AuthRuntime

# What a one-time login code may look like before any upstream hears of it. OAuth codes are
# VSCHARs (RFC 6749 appendix A.11; no space here); WeChat's `wx.login`/`getPhoneNumber` codes are
# URL-safe tokens. Anything else (control characters, non-ASCII, megabytes) is the caller's
# error: refused here, it never reaches the upstream, so it can never count against that
# upstream's breaker and take logins down for everybody else.
_OAUTH_CODE = re.compile(r"[\x21-\x7e]{8,512}")
_WECHAT_CODE = re.compile(r"[0-9A-Za-z_.~-]{8,256}")
_REDIRECT_URI = re.compile(r"https?://[\x21-\x7e]{1,504}")


def check_code(value: str, *, field: str = "code", wechat: bool = False) -> str:
    """The code itself, or a 400 naming the field (the caller's input: nothing is sent)."""
    pattern = _WECHAT_CODE if wechat else _OAUTH_CODE
    if not pattern.fullmatch(value):
        shape = "8-256 characters of [0-9A-Za-z_.~-]" if wechat else "8-512 printable ASCII characters"
        raise ProblemError(
            f"{field}: not a login code ({shape})",
            status=400,
            code="validation_failed",
            detail_zh=f"{field}：不是登录码（{shape}）",
            extra={"field": f"$.{field}"},
        )
    return value


def check_redirect_uri(value: str) -> str:
    if not _REDIRECT_URI.fullmatch(value):
        raise ProblemError(
            "redirectUri: an http(s) URL of printable ASCII characters",
            status=400,
            code="validation_failed",
            detail_zh="redirectUri：须为由可打印 ASCII 字符组成的 http(s) 地址",
            extra={"field": "$.redirectUri"},
        )
    return value


async def admit(rt: AuthRuntime, *keys: str) -> None:
    """Count one attempt against each key (429 + Retry-After over the limit), then refuse locked keys."""
    cfg = rt.config
    for key in keys:
        limit = cfg.rate_per_ip if key.startswith("ip:") else cfg.rate_per_subject
        await ratelimit.enforce(rt.redis, f"auth:{key}", limit, cfg.rate_window_s)
    for key in keys:
        left = await ratelimit.locked_for(rt.redis, f"auth:{key}")
        if left:
            raise ProblemError(
                "too many failed attempts; this is locked for a while",
                status=429,
                code="locked_out",
                headers={"Retry-After": str(left)},
                extra={"retryAfter": left},
                detail_zh="失败次数过多，已暂时锁定",
            )


async def failed(rt: AuthRuntime, key: str, *, subject: str, channel: str, object: str | None = None) -> None:
    """Count a failure against `key`; the failure that reaches the threshold locks it out (audited)."""
    cfg = rt.config
    locked = await ratelimit.record_failure(
        rt.redis,
        f"auth:{key}",
        threshold=cfg.lockout_failures,
        window_s=cfg.lockout_window_s,
        lock_s=cfg.lockout_s,
    )
    if locked:
        await audit.record(
            rt.pool,
            subject=subject,
            action="lockout",
            object=object or key.split(":", 1)[0],
            result=f"locked_{cfg.lockout_s}s",
            channel=channel,
            request_id=context.request_id.get(),
        )


async def succeeded(rt: AuthRuntime, *keys: str) -> None:
    for key in keys:
        await ratelimit.clear_failures(rt.redis, f"auth:{key}")
