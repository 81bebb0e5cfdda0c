"""App identity: the provincial identity provider's authorisation code + PKCE verifier -> our tokens.

The app does the front-channel part (authorize with an S256 challenge); the BFF redeems the code
with the verifier and its client secret, verifies the id_token, and reads userinfo.
"""

from __future__ import annotations

import re
from datetime import datetime

from adapters import context
from adapters.errors import BadUpstreamAnswer, ProblemError
from auth import audit, persons, protection
from auth.issue import Tokens, logged_in, start_session
from auth.runtime import AuthRuntime

_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


async def login(
    rt: AuthRuntime,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    ip: str,
    device: str | None,
    now: datetime,
) -> Tokens:
    if not _VERIFIER.match(code_verifier):
        raise ProblemError(
            "codeVerifier: 43-128 characters of [A-Za-z0-9._~-] (RFC 7636)",
            status=400,
            code="validation_failed",
            detail_zh="codeVerifier：43 到 128 个 [A-Za-z0-9._~-] 字符（RFC 7636）",
            extra={"field": "$.codeVerifier"},
        )
    protection.check_code(code)
    protection.check_redirect_uri(redirect_uri)
    keys = [f"ip:{ip}"] + ([f"device:{device}"] if device else [])
    await protection.admit(rt, *keys)
    try:
        token_set = await rt.idp.exchange_code(
            code=code, code_verifier=code_verifier, redirect_uri=redirect_uri
        )
    except ProblemError as exc:
        if exc.code == "idp_code_invalid" and device:
            await protection.failed(rt, f"device:{device}", subject="-", channel="app")
        await audit.record(
            rt.pool,
            subject="-",
            action="login",
            object="idp",
            result=exc.code,
            channel="app",
            request_id=context.request_id.get(),
        )
        raise
    claims = await rt.idp.verify_id_token(token_set.id_token)
    resident = await rt.idp.userinfo(token_set.access_token)
    if resident.sub != claims.get("sub"):
        raise BadUpstreamAnswer(
            "identity provider userinfo does not match the id_token",
            detail_zh="身份认证平台的用户信息与 id_token 不符",
        )
    person = await persons.upsert_resident(rt.pool, rt.crypto, resident)
    tokens = await start_session(
        rt, person_id=person.id, channel="app", level=person.level, now=now, device=device
    )
    return await logged_in(rt, tokens, *keys)
