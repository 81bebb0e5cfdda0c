"""The kiosk device bridge, simulated: what a hall kiosk's local daemon does beside its browser.

On a real kiosk this is a small service on `127.0.0.1` that holds the device's private key (ideally in
a TPM or a USB key), drives the ID-card reader and the camera, and signs what the kiosk page asks the
BFF. Here the card "in the reader" and the face score are set through `/_control`, and the key is made
at start (or read from a file). The page never sees the key; it gets:

- `GET /bridge/status` -> `{"kioskId", "cardPresent"}`;
- `POST /bridge/login` -> reads the card, takes a fresh face match, signs `POST
  /api/v1/auth/kiosk/login` with them and sends it to the BFF itself, answering the BFF's answer as is
  (the short kiosk session, or its problem document): the card read never reaches the page. 409
  `no_card` when the reader is empty, 502 `bff_unreachable` when the BFF does not answer;
- `POST /bridge/sign` `{"method", "path", "body"}` -> the four `X-Kiosk-*` headers for exactly that
  request. Only `/api/v1/` paths, never staff routes, only from the configured page origin (CORS and an
  `Origin` check), bodies up to 64 KiB.

The signature string is the BFF's: `METHOD \\n PATH?QUERY \\n sha256(body) hex \\n timestamp \\n nonce`,
Ed25519 over it, base64. The sandbox imports nothing of ours: this file restates the wire format.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import aiohttp
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.config.cors import CORSConfig

MAX_BODY = 64 * 1024
_FORBIDDEN_PREFIXES = ("/api/v1/staff/",)


class Card(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: str
    id_number: str
    issuer: str = "长沙市公安局岳麓分局"
    valid_from: str = "20200101"
    valid_to: str = "20400101"


class FaceSetting(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    score: float = 0.97
    liveness: bool = True


class SignIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    method: str
    path: str
    body: str = ""


class Bridge:
    def __init__(self, kiosk_id: str, key: Ed25519PrivateKey, allow_origins: list[str], bff_url: str) -> None:
        self.kiosk_id = kiosk_id
        self.bff_url = bff_url.rstrip("/")
        self.key = key
        self.allow_origins = allow_origins
        self.card: Card | None = None
        self.face = FaceSetting()
        self.signed: list[str] = []  # "METHOD path" of everything signed, for tests

    @property
    def public_key_b64(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        nonce = secrets.token_urlsafe(18)
        message = "\n".join([method.upper(), path, hashlib.sha256(body).hexdigest(), stamp, nonce]).encode()
        self.signed.append(f"{method.upper()} {path}")
        return {
            "X-Kiosk-Id": self.kiosk_id,
            "X-Kiosk-Timestamp": stamp,
            "X-Kiosk-Nonce": nonce,
            "X-Kiosk-Signature": base64.b64encode(self.key.sign(message)).decode(),
        }


def _refuse(status: int, code: str, detail: str) -> Response[dict[str, Any]]:
    return Response({"code": code, "detail": detail}, status_code=status)


def create_bridge_app(
    kiosk_id: str, key: Ed25519PrivateKey, allow_origins: list[str], bff_url: str | None = None
) -> Litestar:
    """`bff_url`: where the bridge sends the login it signs (default: the first page origin)."""
    bridge = Bridge(kiosk_id, key, allow_origins, bff_url or allow_origins[0])

    def origin_ok(request: Request[Any, Any, Any]) -> bool:
        origin = request.headers.get("origin")
        return origin is None or origin in bridge.allow_origins

    @get("/bridge/status")
    async def status() -> dict[str, Any]:
        return {"kioskId": bridge.kiosk_id, "cardPresent": bridge.card is not None}

    @post("/bridge/login", status_code=200)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        if not origin_ok(request):
            return _refuse(403, "origin_refused", "only the kiosk page may use the bridge")
        if bridge.card is None:
            return _refuse(409, "no_card", "no ID card in the reader")
        card = bridge.card
        payload = {
            "idCard": {
                "name": card.name,
                "idNumber": card.id_number,
                "issuer": card.issuer,
                "validFrom": card.valid_from,
                "validTo": card.valid_to,
                "chipSerial": secrets.token_hex(8),
            },
            "faceMatch": {
                "score": bridge.face.score,
                "liveness": bridge.face.liveness,
                "capturedAt": int(time.time()),
            },
        }
        body = msgspec.json.encode(payload)
        path = "/api/v1/auth/kiosk/login"
        headers = {
            **bridge.headers("POST", path, body),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Language": request.headers.get("accept-language", "zh-CN")[:64],
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(bridge.bff_url + path, data=body, headers=headers) as answer,
            ):
                content, status = await answer.read(), answer.status
                media = answer.headers.get("Content-Type", "application/json")
        except (aiohttp.ClientError, TimeoutError):
            return _refuse(502, "bff_unreachable", "the BFF did not answer")
        return Response(content, status_code=status, media_type=media, headers={"Cache-Control": "no-store"})

    @post("/bridge/sign", status_code=200)
    async def sign(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        if not origin_ok(request):
            return _refuse(403, "origin_refused", "only the kiosk page may use the bridge")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _refuse(413, "too_large", "request too large")
        try:
            data = msgspec.json.decode(raw, type=SignIn)
        except msgspec.DecodeError as exc:
            return _refuse(400, "bad_request", str(exc))
        method = data.method.upper()
        if method not in {"GET", "POST", "PUT", "DELETE"}:
            return _refuse(400, "bad_request", "method not signable")
        if not data.path.startswith("/api/v1/") or data.path.startswith(_FORBIDDEN_PREFIXES):
            return _refuse(403, "path_refused", "the bridge signs resident API calls only")
        return Response({"headers": bridge.headers(method, data.path, data.body.encode())})

    @get("/_control/public-key")
    async def public_key() -> dict[str, str]:
        return {"kioskId": bridge.kiosk_id, "publicKey": bridge.public_key_b64, "algorithm": "ed25519"}

    @put("/_control/card")
    async def insert_card(data: Card) -> dict[str, bool]:
        bridge.card = data
        return {"cardPresent": True}

    @delete("/_control/card", status_code=200)
    async def remove_card() -> dict[str, bool]:
        bridge.card = None
        return {"cardPresent": False}

    @put("/_control/face")
    async def set_face(data: FaceSetting) -> dict[str, Any]:
        bridge.face = data
        return {"score": data.score, "liveness": data.liveness}

    @get("/_control/signed")
    async def signed() -> dict[str, list[str]]:
        return {"signed": bridge.signed}

    return Litestar(
        route_handlers=[status, login, sign, public_key, insert_card, remove_card, set_face, signed],
        cors_config=CORSConfig(
            allow_origins=allow_origins, allow_methods=["GET", "POST"], allow_headers=["Content-Type"]
        ),
        openapi_config=None,
        debug=False,
    )
