"""Issue 9 §4: headers and personal data. Uploads that are two files at once or carry names a
viewer misreads; token lifetimes capped at verification; ID cards no card has; error details that
quote input are masked. (The suite-wide header scan is in tests/conftest.py.)"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from adapters.errors import ProblemError
from bff.uploads.service import check, clean_name
from tests.auth_helpers import bearer, kiosk_payload, kiosk_post, login_resident, new_resident, register_kiosk
from tests.test_journey_helpers import JPEG, PDF, PNG, auth, key

ZIP_TAIL = b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + b"\x00" * 20 + b"PK\x05\x06" + b"\x00" * 18
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'

POLYGLOTS = {
    "pdf+zip": (PDF + ZIP_TAIL, "application/pdf", "a.pdf"),
    "pdf+zip inside": (PDF.replace(b"trailer", ZIP_TAIL + b"trailer"), "application/pdf", "a.pdf"),
    "pdf+javascript": (
        PDF.replace(b"/Type /Catalog", b"/Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert(1)) >>"),
        "application/pdf",
        "a.pdf",
    ),
    "pdf+launch": (PDF.replace(b"/Type /Catalog", b"/Type /Catalog /Launch"), "application/pdf", "a.pdf"),
    "pdf then html": (PDF + b"<html><script>alert(1)</script></html>" * 40, "application/pdf", "a.pdf"),
    "jpeg+php appended": (JPEG + b"<?php system($_GET['c']); ?>", "image/jpeg", "a.jpg"),
    "jpeg+php in a comment": (
        JPEG[:2] + b"\xff\xfe\x00\x20<?php system($_GET['c']); ?>\x00\x00" + JPEG[2:],
        "image/jpeg",
        "a.jpg",
    ),
    "png+svg appended": (PNG + SVG, "image/png", "a.png"),
    "png+svg in a text chunk": (
        PNG[:33] + PNG[8:8] + b"\x00\x00\x00\x40tEXt" + SVG[:64] + b"\x00\x00\x00\x00" + PNG[33:],
        "image/png",
        "a.png",
    ),
    "png+zip": (PNG + ZIP_TAIL, "image/png", "a.png"),
}


@pytest.mark.parametrize("name", sorted(POLYGLOTS))
def test_polyglots_are_refused(name: str) -> None:
    content, media, file_name = POLYGLOTS[name]
    with pytest.raises(ProblemError) as refused:
        check(content, media, file_name)
    assert refused.value.code == "upload_polyglot", refused.value.detail


def test_plain_files_pass_and_names_are_normalised() -> None:
    assert check(PDF, "application/pdf", "  申请表 \u3000 2026.pdf ") == (
        "application/pdf",
        "申请表 2026.pdf",
    )
    assert check(PNG, "image/png", "照片") == ("image/png", "照片.png")
    assert check(JPEG, "application/octet-stream", "证件.JPG") == ("image/jpeg", "证件.JPG")
    # NFC: a decomposed é is stored composed.
    assert clean_name("re\u0301sume\u0301.pdf") == "r\u00e9sum\u00e9.pdf"


@pytest.mark.parametrize(
    ("file_name", "code"),
    [
        ("x.pdf.exe", "upload_type_mismatch"),
        ("x.pdf.html", "upload_type_mismatch"),
        ("x.svg", "upload_type_mismatch"),
        ("invoice\u202efdp.exe", "upload_name_not_allowed"),
        ("a\u200bb.pdf", "upload_name_not_allowed"),
        ("a\u2066b.pdf", "upload_name_not_allowed"),
        ("CON.pdf", "upload_name_not_allowed"),
        ("nul.pdf", "upload_name_not_allowed"),
        ("com1.pdf", "upload_name_not_allowed"),
        ("LPT9.tar.pdf", "upload_name_not_allowed"),
        (".htaccess.pdf", "upload_name_not_allowed"),
        ("a.pdf.", "upload_name_not_allowed"),
        ("../../etc/passwd.pdf", "validation_failed"),
    ],
)
def test_dangerous_names_are_refused(file_name: str, code: str) -> None:
    with pytest.raises(ProblemError) as refused:
        check(PDF, "application/pdf", file_name)
    assert refused.value.code in {code, "upload_name_not_allowed"}, (file_name, refused.value.code)


async def test_the_upload_route_refuses_a_polyglot_and_a_bidi_name_and_keeps_the_clean_name(
    client, sandbox
) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    content, media, file_name = POLYGLOTS["jpeg+php appended"]
    refused = await client.post(
        "/api/v1/uploads",
        params={"name": file_name},
        content=content,
        headers=auth(who, key(), **{"Content-Type": media}),
    )
    assert refused.status_code == 422 and refused.json()["code"] == "upload_polyglot"
    refused = await client.post(
        "/api/v1/uploads",
        params={"name": "photo\u202egpj.exe"},
        content=JPEG,
        headers=auth(who, key(), **{"Content-Type": "image/jpeg"}),
    )
    assert refused.status_code == 400 and refused.json()["code"] == "upload_name_not_allowed"
    kept = await client.post(
        "/api/v1/uploads",
        params={"name": " 身份证  正面 "},
        content=JPEG,
        headers=auth(who, key(), **{"Content-Type": "image/jpeg"}),
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["fileName"] == "身份证 正面.jpg"


async def test_a_signed_token_with_a_30_day_lifetime_is_refused(client) -> None:
    """Signed with the app's own active key: only the lifetime is wrong."""
    ring = client.app.state.auth.tokens.ring  # type: ignore[attr-defined]
    active = ring.active
    now = int(time.time())

    def mint(lifetime: int, issued_at: int = now) -> str:
        claims = {
            "iss": "https://api.sanxiang.gov.cn",
            "aud": "sanxiang-mobile",
            "sub": str(uuid.uuid4()),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + lifetime,
            "jti": uuid.uuid4().hex,
            "sid": uuid.uuid4().hex,
            "chn": "app",
            "lvl": 3,
        }
        return jwt.encode(
            claims, active.private, algorithm=active.alg, headers={"kid": active.kid, "typ": "JWT"}
        )

    for token in (mint(30 * 86400), mint(601), mint(600, now + 3600)):
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "token_invalid", response.json()
    # The same construction at the issued lifetime is accepted by verification (404/200, not 401).
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {mint(600)}"})
    assert response.status_code != 401, response.text


@pytest.mark.parametrize(
    ("valid_from", "valid_to"),
    [("20200101", "99999999"), ("20200101", "20991231"), ("20200101", "20251340"), ("20201301", "20301301")],
)
async def test_kiosk_id_cards_no_card_has_are_refused(client, sandbox, valid_from, valid_to) -> None:
    kiosk = await register_kiosk(client)
    resident = await new_resident(sandbox, level=2)
    payload = kiosk_payload(resident, validFrom=valid_from, validTo=valid_to)
    response = await kiosk_post(client, kiosk, "/api/v1/auth/kiosk/login", payload)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert "validTo" in response.json()["detail"] or "validFrom" in response.json()["detail"]


async def test_a_20_year_and_a_long_term_card_are_accepted(client, sandbox) -> None:
    kiosk = await register_kiosk(client)
    for valid_to in ("20400101", "长期"):
        resident = await new_resident(sandbox, level=2)
        payload = kiosk_payload(resident, validFrom="20200101", validTo=valid_to)
        response = await kiosk_post(client, kiosk, "/api/v1/auth/kiosk/login", payload)
        assert response.status_code == 200, response.text


async def test_error_details_never_echo_an_unmasked_id_number_or_phone(client, sandbox) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    for value in ("110101199003077774", "13812345678"):
        response = await client.get(f"/api/v1/cases/{value}", headers=bearer(who))
        assert response.status_code in {400, 404}, response.text
        assert value not in response.text, response.text
        response = await client.get(f"/api/v1/appointments/{value}", headers=bearer(who))
        assert value not in response.text, response.text
    # A validation message quoting the input is masked too.
    response = await client.post("/api/v1/auth/wechat/login", json={"code": 13812345678})
    assert response.status_code == 400 and "13812345678" not in response.text


async def test_personal_responses_are_no_store_and_every_response_has_the_security_headers(
    client, sandbox
) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    for path in ("/api/v1/me", "/api/v1/me/sessions", "/api/v1/cases", "/api/v1/appointments"):
        response = await client.get(path, headers=bearer(who))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store", path
    public = await client.get("/healthz")
    for response in (public, await client.get("/api/v1/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers


async def test_hsts_is_sent_when_configured_behind_tls(make_client) -> None:
    client = await make_client(hsts_max_age_s=31536000)
    response = await client.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_the_suite_wide_scan_finds_what_it_looks_for() -> None:
    """tests/conftest.py's end-of-session scan, fed one bad exchange of each kind."""
    from tests.conftest import header_and_echo_findings

    good = {
        "x-content-type-options": "nosniff",
        "content-security-policy": "frame-ancestors 'none'",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }
    exchanges = [
        ("GET", "http://t/healthz", b"", False, 200, {"cache-control": "no-store"}, b"ok"),
        ("GET", "http://t/api/v1/me", b"", True, 200, {**good, "cache-control": "no-cache"}, b"{}"),
        (
            "GET",
            "http://t/api/v1/cases/110101199003077774",
            b"",
            True,
            404,
            good,
            b"no case 110101199003077774",
        ),
        ("POST", "http://t/x", b'{"p": "13812345678"}', False, 400, good, b"bad 138****5678"),
    ]
    unsafe, stored, echoed = header_and_echo_findings(exchanges)
    assert len(unsafe) == 1 and "healthz" in unsafe[0]
    assert len(stored) == 1 and "/api/v1/me" in stored[0]
    assert len(echoed) == 1 and "cases" in echoed[0]


async def test_detail_follows_the_request_language(client) -> None:
    """Issue 9 §5: `detail` in the request's language where a Chinese text exists (the title always)."""
    body = b"[" * 100 + b"]" * 100
    zh = await client.post(
        "/api/v1/auth/app/login", content=body, headers={"content-type": "application/json"}
    )
    en = await client.post(
        "/api/v1/auth/app/login",
        content=body,
        headers={"content-type": "application/json", "Accept-Language": "en"},
    )
    assert "嵌套" in zh.json()["detail"] and "nested" in en.json()["detail"]
    zh = await client.get("/api/v1/me")
    en = await client.get("/api/v1/me", headers={"Accept-Language": "en-US"})
    assert zh.json()["detail"].startswith("请先登录") and en.json()["detail"].startswith("sign in first")
    zh = await client.post("/api/v1/auth/wechat/login", content=b"{}", headers={"content-type": "text/plain"})
    assert zh.status_code == 415 and "application/json" in zh.json()["detail"] and "请" in zh.json()["detail"]
