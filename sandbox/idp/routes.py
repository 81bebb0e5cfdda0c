"""The provincial identity provider: OIDC authorisation code + PKCE (S256), userinfo, JWKS, look-up.

A real provider shows a login page at /authorize; the sandbox signs the resident named by
`login_hint` in at once (and lists the demo residents when there is none), then redirects with a
single-use code valid 5 minutes, exactly as the real one does after a successful login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

import asyncpg
import jwt
from litestar import MediaType, Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect

from sandbox.idp import keys

# Registered relying parties: client_id -> secret.
CLIENTS = {"sanxiang-bff": "sandbox-idp-secret"}
CODE_TTL = timedelta(minutes=5)
TOKEN_TTL = timedelta(hours=1)


def _issuer(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/") + "/idp"


def _oauth_error(error: str, description: str, status: int = 400) -> Response[Any]:
    return Response({"error": error, "error_description": description}, status_code=status)


def _client(request: Request[Any, Any, Any], form: dict[str, str]) -> str | None:
    """client_secret_basic, or client_secret_post; None when the client does not authenticate."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    expected = CLIENTS.get(client_id)
    if expected is None or not hmac.compare_digest(expected, secret):
        return None
    return client_id


def resident_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "sub": row["sub"],
        "name": row["name"],
        "id_card_number": row["id_card_number"],
        "phone_number": row["phone_number"],
        "real_name_level": f"L{row['level']}",
    }


@get("/.well-known/openid-configuration")
async def discovery(request: Request[Any, Any, Any]) -> dict[str, Any]:
    issuer = _issuer(request)
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }


@get("/authorize", media_type=MediaType.HTML)
async def authorize(
    db: NamedDependency[asyncpg.Pool],
    client_id: Annotated[str, QueryParameter()],
    redirect_uri: Annotated[str, QueryParameter()],
    response_type: Annotated[str, QueryParameter()] = "",
    oauth_scope: Annotated[str, QueryParameter(name="scope")] = "",
    oauth_state: Annotated[str, QueryParameter(name="state")] = "",
    code_challenge: Annotated[str, QueryParameter()] = "",
    code_challenge_method: Annotated[str, QueryParameter()] = "",
    nonce: Annotated[str | None, QueryParameter()] = None,
    login_hint: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    if client_id not in CLIENTS or not redirect_uri.startswith(("https://", "http://")):
        # Never redirect to an unverified client's URI.
        return _oauth_error("invalid_request", "unknown client or bad redirect_uri")

    def back(**params: str) -> Response[Any]:
        params = {k: v for k, v in params.items() if v}
        if oauth_state:
            params["state"] = oauth_state
        sep = "&" if "?" in redirect_uri else "?"
        return Redirect(redirect_uri + sep + urlencode(params), status_code=302)

    if response_type != "code":
        return back(error="unsupported_response_type")
    if "openid" not in oauth_scope.split():
        return back(error="invalid_scope", error_description="scope must include openid")
    if code_challenge_method != "S256" or not 43 <= len(code_challenge) <= 128:
        return back(error="invalid_request", error_description="PKCE with S256 is required")
    if login_hint is None:
        rows = await db.fetch("SELECT sub, name FROM sandbox.idp_residents ORDER BY created_at LIMIT 20")
        links = "".join(
            f'<li><a href="?login_hint={escape(r["sub"])}">{escape(r["name"])}</a></li>' for r in rows
        )
        return Response(f"<html><body><h1>沙箱统一身份认证</h1><ul>{links}</ul></body></html>")
    resident = await db.fetchrow("SELECT sub FROM sandbox.idp_residents WHERE sub = $1", login_hint)
    if resident is None:
        return back(error="access_denied", error_description="unknown user")
    code = secrets.token_urlsafe(24)
    await db.execute(
        """
        INSERT INTO sandbox.idp_codes (code, sub, client_id, redirect_uri, code_challenge, nonce, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        code,
        login_hint,
        client_id,
        redirect_uri,
        code_challenge,
        nonce,
        datetime.now(UTC) + CODE_TTL,
    )
    return back(code=code)


@post("/token", status_code=200)
async def token(
    request: Request[Any, Any, Any],
    db: NamedDependency[asyncpg.Pool],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    client_id = _client(request, data)
    if client_id is None:
        return _oauth_error("invalid_client", "client authentication failed", 401)
    if data.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type", "only authorization_code")
    now = datetime.now(UTC)
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM sandbox.idp_codes WHERE code = $1 FOR UPDATE", data.get("code", "")
        )
        if row is None or row["used_at"] is not None or row["expires_at"] < now:
            return _oauth_error("invalid_grant", "code is invalid, expired or already used")
        await conn.execute("UPDATE sandbox.idp_codes SET used_at = $2 WHERE code = $1", row["code"], now)
        if row["client_id"] != client_id or row["redirect_uri"] != data.get("redirect_uri"):
            return _oauth_error("invalid_grant", "redirect_uri or client does not match the code")
        verifier = data.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(digest, row["code_challenge"]):
            return _oauth_error("invalid_grant", "PKCE verification failed")
        level = await conn.fetchval("SELECT level FROM sandbox.idp_residents WHERE sub = $1", row["sub"])
        access = secrets.token_urlsafe(32)
        await conn.execute(
            "INSERT INTO sandbox.idp_tokens (token, sub, expires_at) VALUES ($1, $2, $3)",
            access,
            row["sub"],
            now + TOKEN_TTL,
        )
    issued = int(time.time())
    claims = {
        "iss": _issuer(request),
        "aud": client_id,
        "sub": row["sub"],
        "iat": issued,
        "exp": issued + 600,
        "acr": f"L{level}",
        "auth_time": issued,
    }
    if row["nonce"]:
        claims["nonce"] = row["nonce"]
    id_token = jwt.encode(claims, keys.private_key(), algorithm="RS256", headers={"kid": keys.KID})
    return Response(
        {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(TOKEN_TTL.total_seconds()),
            "id_token": id_token,
            "scope": "openid profile phone idcard",
        },
        headers={"Cache-Control": "no-store"},
    )


@get("/userinfo")
async def userinfo(request: Request[Any, Any, Any], db: NamedDependency[asyncpg.Pool]) -> Response[Any]:
    header = request.headers.get("authorization", "")
    access = header[7:] if header.lower().startswith("bearer ") else ""
    row = await db.fetchrow(
        """
        SELECT r.* FROM sandbox.idp_tokens t JOIN sandbox.idp_residents r USING (sub)
        WHERE t.token = $1 AND t.expires_at > now()
        """,
        access,
    )
    if row is None:
        return Response(
            {"error": "invalid_token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return Response(resident_json(row))


@get("/jwks")
async def jwks() -> dict[str, Any]:
    return keys.jwks()


@post("/api/residents/lookup", status_code=200)
async def lookup(
    request: Request[Any, Any, Any],
    db: NamedDependency[asyncpg.Pool],
    data: Annotated[dict[str, str], Body()],
) -> Response[Any]:
    if _client(request, {}) is None:
        return _oauth_error("invalid_client", "client authentication failed", 401)
    if data.get("phone_number"):
        row = await db.fetchrow(
            "SELECT * FROM sandbox.idp_residents WHERE phone_number = $1 ORDER BY created_at LIMIT 1",
            data["phone_number"],
        )
    elif data.get("id_card_number") and data.get("name"):
        row = await db.fetchrow(
            "SELECT * FROM sandbox.idp_residents WHERE id_card_number = $1 AND name = $2",
            data["id_card_number"].upper(),
            data["name"],
        )
    else:
        return _oauth_error("invalid_request", "phone_number, or id_card_number with name, is required")
    if row is None:
        return Response({"found": False})
    return Response({"found": True, "resident": resident_json(row)})


router = Router(
    path="/idp",
    route_handlers=[discovery, authorize, token, userinfo, jwks, lookup],
)
