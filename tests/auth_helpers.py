"""Log in for tests: real logins over HTTP against the sandbox, for every channel.

    from tests.auth_helpers import login_resident, staff_token, bearer
    who = await login_resident(client, sandbox, channel="app", level=2)
    await client.get("/api/v1/me", headers=bearer(who))

`login_resident` creates a fresh resident at the identity provider and logs them in through the
real path of the channel (mini-program: wx.login code -> bindingRequired -> getPhoneNumber binding,
plus face verification for level 3; app: authorize + PKCE; kiosk: a kiosk registered by staff signs
an ID-card read and a face match). Kiosk sessions need every later request signed too:
`who["kiosk"].headers(method, path, body)` gives the signature headers.

Staff: there is no staff login in this repository yet. `staff_token(client)` mints a staff access
token in-process with the app's own key ring. Test-only: nothing reachable over HTTP mints one.

Every ID number and phone these helpers create is remembered in KNOWN_PII, and every WeChat
session_key in KNOWN_SECRETS, so the suite-end scan can prove none of them leaked.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KNOWN_PII: set[str] = set()
KNOWN_SECRETS: set[str] = set()
REDIRECT_URI = "https://app.sanxiang.gov.cn/oauth/callback"


def bearer(login: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {login['access_token']}"}


async def new_resident(sandbox: httpx.AsyncClient, *, level: int = 2, **fields: Any) -> dict[str, Any]:
    response = await sandbox.post("/_control/idp/residents", json={"level": level, **fields})
    assert response.status_code == 201, response.text
    resident: dict[str, Any] = response.json()
    KNOWN_PII.update({resident["id_card_number"], resident["phone_number"]})
    return resident


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def idp_code(sandbox: httpx.AsyncClient, subject: str, challenge: str) -> str:
    """What the app gets back on its redirect URI after the resident signs in at the provider."""
    response = await sandbox.get(
        "/idp/authorize",
        params={
            "response_type": "code",
            "client_id": "sanxiang-bff",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile phone idcard",
            "state": secrets.token_hex(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": subject,
        },
    )
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert "code" in query, query
    return query["code"][0]


def _login(body: dict[str, Any], resident: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "access_token": body["accessToken"],
        "refresh_token": body.get("refreshToken"),
        "person_id": body["personId"],
        "session_id": body["sessionId"],
        "level": body["level"],
        "channel": body["channel"],
        "resident": resident,
        **extra,
    }


async def login_app(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, resident: dict[str, Any]
) -> dict[str, Any]:
    verifier, challenge = pkce()
    code = await idp_code(sandbox, resident["sub"], challenge)
    response = await client.post(
        "/api/v1/auth/app/login", json={"code": code, "codeVerifier": verifier, "redirectUri": REDIRECT_URI}
    )
    assert response.status_code == 200, response.text
    return _login(response.json(), resident)


async def wechat_code(sandbox: httpx.AsyncClient, openid: str | None = None) -> dict[str, Any]:
    response = await sandbox.post("/_control/wechat/codes", json={"openid": openid} if openid else {})
    assert response.status_code == 201, response.text
    minted: dict[str, Any] = response.json()
    return minted


async def phone_code(sandbox: httpx.AsyncClient, phone: str) -> str:
    response = await sandbox.post("/_control/wechat/phone-codes", json={"phoneNumber": phone})
    assert response.status_code == 201, response.text
    return str(response.json()["code"])


async def remember_session_key(sandbox: httpx.AsyncClient, openid: str) -> None:
    user = (await sandbox.get(f"/_control/wechat/users/{openid}")).json()
    KNOWN_SECRETS.add(user["sessionKey"])


async def face_step_up(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, login: dict[str, Any]
) -> dict[str, Any]:
    started = await client.post("/api/v1/auth/wechat/face/start", headers=bearer(login))
    assert started.status_code == 200, started.text
    verify_id = started.json()["verifyId"]
    done = await sandbox.post(f"/_control/wechat/face/{verify_id}", json={"verifyRet": 10000})
    assert done.status_code == 200, done.text
    finished = await client.post(
        "/api/v1/auth/wechat/face/finish", headers=bearer(login), json={"verifyId": verify_id}
    )
    assert finished.status_code == 200, finished.text
    body = finished.json()
    return {**login, "access_token": body["accessToken"], "level": body["level"]}


async def login_miniprogram(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, resident: dict[str, Any], *, step_up: bool = False
) -> dict[str, Any]:
    minted = await wechat_code(sandbox)
    first = await client.post("/api/v1/auth/wechat/login", json={"code": minted["code"]})
    assert first.status_code == 200, first.text
    assert first.json()["bindingRequired"] is True, first.text
    await remember_session_key(sandbox, minted["openid"])
    code = await phone_code(sandbox, resident["phone_number"])
    bound = await client.post(
        "/api/v1/auth/wechat/phone", json={"code": code, "bindingToken": first.json()["bindingToken"]}
    )
    assert bound.status_code == 200, bound.text
    login = _login(bound.json(), resident, openid=minted["openid"])
    if step_up:
        login = await face_step_up(client, sandbox, login)
    return login


class Kiosk:
    """A kiosk device: an Ed25519 key pair; signs requests the way the BFF expects."""

    def __init__(self, kiosk_id: str | None = None) -> None:
        self.id = kiosk_id or f"kiosk-{uuid.uuid4().hex[:10]}"
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_key_b64(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def headers(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or secrets.token_urlsafe(18)
        message = "\n".join([method.upper(), path, hashlib.sha256(body).hexdigest(), stamp, nonce]).encode()
        return {
            "X-Kiosk-Id": self.id,
            "X-Kiosk-Timestamp": stamp,
            "X-Kiosk-Nonce": nonce,
            "X-Kiosk-Signature": base64.b64encode(self.key.sign(message)).decode(),
        }


def staff_token(
    client: httpx.AsyncClient, *, staff_id: str = "staff:test", roles: tuple[str, ...] = ("staff",)
) -> str:
    """Test-only: a staff access token minted with the app's own keys (see the module docstring)."""
    tokens = client.app.state.auth.tokens  # type: ignore[attr-defined]
    issued = tokens.issue(
        subject=staff_id, session_id=uuid.uuid4().hex, channel="staff", level=3, roles=roles
    )
    return str(issued.token)


def staff_headers(client: httpx.AsyncClient, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {staff_token(client, **kwargs)}"}


async def register_kiosk(client: httpx.AsyncClient, kiosk: Kiosk | None = None) -> Kiosk:
    kiosk = kiosk or Kiosk()
    response = await client.post(
        "/api/v1/staff/kiosks",
        headers=staff_headers(client),
        json={
            "kioskId": kiosk.id,
            "name": "政务大厅自助机",
            "hallId": "hall-430102-01",
            "publicKey": kiosk.public_key_b64,
        },
    )
    assert response.status_code == 201, response.text
    return kiosk


def kiosk_payload(
    resident: dict[str, Any], *, score: float = 0.97, liveness: bool = True, **card: Any
) -> dict[str, Any]:
    return {
        "idCard": {
            "name": resident["name"],
            "idNumber": resident["id_card_number"],
            "issuer": "长沙市公安局岳麓分局",
            "validFrom": "20200101",
            "validTo": "20400101",
            "chipSerial": secrets.token_hex(8),
            **card,
        },
        "faceMatch": {"score": score, "liveness": liveness, "capturedAt": int(time.time())},
    }


async def kiosk_post(
    client: httpx.AsyncClient, kiosk: Kiosk, path: str, payload: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = httpx.Request("POST", "http://x", json=payload).content
    signed = {**kiosk.headers("POST", path, body), "Content-Type": "application/json", **(headers or {})}
    return await client.post(path, content=body, headers=signed)


async def login_kiosk(
    client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    resident: dict[str, Any],
    kiosk: Kiosk | None = None,
) -> dict[str, Any]:
    kiosk = kiosk or await register_kiosk(client)
    response = await kiosk_post(client, kiosk, "/api/v1/auth/kiosk/login", kiosk_payload(resident))
    assert response.status_code == 200, response.text
    return _login(response.json(), resident, kiosk=kiosk)


async def login_resident(
    client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    *,
    channel: str = "miniprogram",
    level: int = 2,
    resident: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A fresh resident logged in on `channel` whose session is at real-name `level`.

    Returns access_token, refresh_token, person_id, session_id, level, channel, resident (the
    identity provider's record: sub, name, id_card_number, phone_number) and, for kiosks, `kiosk`.
    """
    if channel == "kiosk":
        resident = resident or await new_resident(sandbox, level=max(level, 2))
        return await login_kiosk(client, sandbox, resident)
    resident = resident or await new_resident(sandbox, level=level)
    if channel == "app":
        return await login_app(client, sandbox, resident)
    if channel == "miniprogram":
        return await login_miniprogram(client, sandbox, resident, step_up=level >= 3)
    raise ValueError(f"unknown channel {channel}")
