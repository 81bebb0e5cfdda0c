"""Issue 9 §1: no input gives a 5xx. Each example of the issue, then the class: every route.

The edge inspects every URL and JSON body before routing (bff/platform/inputs.py); these tests
send what was seen to give a 500 and prove it is a 400/413/414/415 problem naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.errors import ProblemError
from bff.platform import paging
from bff.platform.inputs import InputRefused, check_json
from tests.auth_helpers import Kiosk, bearer, login_resident, staff_headers
from tests.test_journey_helpers import auth, key, signed


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def test_nul_in_a_case_form_is_a_400_naming_the_field(client, sandbox) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    body = {
        "itemCode": "x",
        "regionCode": "430000",
        "form": {"contactName": "张\u0000三", "contactPhone": "13800138000"},
        "materials": [],
    }
    response = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    problem = _problem(response, 400, "validation_failed")
    assert problem["field"] == "$.form.contactName"
    assert "form.contactName" in problem["detail"]


async def test_nul_in_a_kiosk_name_is_a_400(client) -> None:
    response = await client.post(
        "/api/v1/staff/kiosks",
        headers=staff_headers(client),
        json={"kioskId": "k-nul", "name": "自助机\u0000", "hallId": "hall-1", "publicKey": "AAAA"},
    )
    assert _problem(response, 400, "validation_failed")["field"] == "$.name"


async def test_other_control_characters_and_lone_surrogates_are_refused(client) -> None:
    for text in ("a\u0007b", "a\u001bb", "a\u0085b", "a\u007fb"):
        response = await client.post("/api/v1/auth/wechat/login", json={"code": text})
        assert _problem(response, 400, "validation_failed")["field"] == "$.code", text
    # `\ud800` escaped in JSON decodes to a lone surrogate, which PostgreSQL cannot store.
    raw = b'{"code": "\\ud800"}'
    response = await client.post(
        "/api/v1/auth/wechat/login", content=raw, headers={"content-type": "application/json"}
    )
    _problem(response, 400, "validation_failed")
    # Tab and newlines are text (multi-line remarks): they pass the edge.
    check_json(msgspec.json.encode({"remarks": "第一行\n第二行\t完"}))


async def test_deep_nesting_on_an_anonymous_route_is_a_400(client) -> None:
    for body in (b"[" * 200_000, b'{"a":' * 40_000, b"[" * 40 + b"]" * 40):
        response = await client.post(
            "/api/v1/auth/app/login", content=body, headers={"content-type": "application/json"}
        )
        problem = _problem(response, 400, "validation_failed")
        assert "嵌套" in problem["detail"] or "JSON" in problem["detail"]


async def test_invalid_utf8_inside_a_json_string_is_a_400(client) -> None:
    response = await client.post(
        "/api/v1/auth/wechat/login",
        content=b'{"code": "\xff\xfeabc"}',
        headers={"content-type": "application/json"},
    )
    assert "UTF-8" in _problem(response, 400, "validation_failed")["detail"]


async def test_a_json_body_sent_as_text_plain_is_a_415_and_does_not_act(client, sandbox) -> None:
    who = await login_resident(client, sandbox, channel="app", level=2)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = await client.post(
            "/api/v1/auth/logout",
            content=b'{"everywhere": true}',
            headers={**bearer(who), "content-type": content_type},
        )
        _problem(response, 415, "unsupported_media_type")
    # The session still works: the refused logout did nothing.
    assert (await client.get("/api/v1/me", headers=bearer(who))).status_code == 200
    ok = await client.post(
        "/api/v1/auth/logout",
        content=b"{}",
        headers={**bearer(who), "content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code < 300, ok.text


async def test_an_overlong_url_is_a_414_problem(client) -> None:
    response = await client.get("/api/v1/items", params={"q": "办" * 4000})
    _problem(response, 414, "uri_too_long")
    assert response.headers["cache-control"] == "no-store"


async def test_control_characters_in_the_query_are_a_400_naming_the_parameter(client) -> None:
    response = await client.get("/api/v1/items?q=%00abc")
    assert _problem(response, 400, "validation_failed")["field"] == "query.q"
    response = await client.get("/api/v1/items?q=%ff%fe")
    _problem(response, 400, "validation_failed")
    response = await client.get("/api/v1/items/%00")
    assert _problem(response, 400, "validation_failed")["field"] == "path"


async def test_forged_cursors_are_refused_whatever_they_hold(client, sandbox) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)

    def old_style(parts: list[Any]) -> str:
        return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")

    forged = [
        old_style(["k", "9999-12-31T23:59:59+00:00", str(uuid.uuid4())]),  # the DataError of the issue
        old_style(["k", "2026-01-01T00:00:00+00:00", str(uuid.uuid4())]),  # well-formed, unsigned
        old_style(["k", "2026-01-01T00:00:00+00:00", str(uuid.uuid4())]) + ".AAAAAAAAAAAAAAAAAAAAAA",
        "...",
        "a" * 150,
    ]
    for cursor in forged:
        response = await client.get("/api/v1/cases", params={"cursor": cursor}, headers=bearer(who))
        _problem(response, 400, "invalid_cursor")
    # A cursor the API gave out works; its payload changed (keeping the MAC) does not.
    items = list(range(10))
    _, cursor = paging.offset_page(items, 3, None)
    assert cursor and "." in cursor
    assert paging.offset_page(items, 3, cursor)[0] == [3, 4, 5]
    _, mac = cursor.split(".")
    with pytest.raises(ProblemError):
        paging.offset_page(items, 3, old_style(["o", 6]) + "." + mac)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    ident = uuid.uuid4()
    assert paging.keyset_after(paging.keyset_cursor(moment, ident)) == (moment, ident)
    # Under another key (another deployment, or a key rotated away) the same cursor is refused.
    given_out = paging.keyset_cursor(moment, ident)
    paging.use_key(b"another key")
    try:
        with pytest.raises(ProblemError):
            paging.keyset_after(given_out)
    finally:
        paging.use_key(paging.derive_key("", "sanxiang-dev-only-not-a-secret"))


async def test_a_signed_webhook_with_an_empty_or_non_json_body_is_a_400(client) -> None:
    for raw in (b"", b"not json", b"[]", b"{}", b"null"):
        _, headers = signed({})
        stamp = str(int(time.time()))
        import hashlib
        import hmac

        from tests.test_journey_helpers import WEBHOOK_SECRET

        mac = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Case-Timestamp": stamp,
            "X-Case-Signature": f"sha256={mac}",
        }
        response = await client.post("/api/v1/case-events", content=raw, headers=headers)
        assert response.status_code == 400, (raw, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


def _concrete(path: str) -> str:
    parts = []
    for part in path.split("/"):
        parts.append(str(uuid.uuid4()) if part.startswith("{") else part)
    return "/".join(parts)


def _body_routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for method in sorted(handler.http_methods):
                if method in {"POST", "PUT", "PATCH"}:
                    found.append((method, route.path))
    return sorted(set(found))


async def test_every_body_route_refuses_nul_depth_bad_utf8_and_non_json_without_a_5xx(client) -> None:
    """The class: whatever route is added, these bodies never reach a handler."""
    routes = _body_routes(client.app)  # type: ignore[attr-defined]
    assert len(routes) >= 15
    raw_paths = client.app.asgi_handler.raw_body_paths  # type: ignore[attr-defined]
    bodies: list[tuple[bytes, str, int]] = [
        (b'{"a": "\\u0000"}', "application/json", 400),
        (b"[" * 5000, "application/json", 400),
        (b'{"a": "\xc3\x28"}', "application/json", 400),
        (b'{"a": 1}', "text/plain", 415),
    ]
    checked = 0
    for method, path in routes:
        url = _concrete(path)
        for raw, content_type, status in bodies:
            response = await client.request(
                method, url, content=raw, headers={"content-type": content_type, "Idempotency-Key": key()}
            )
            assert response.status_code < 500, (method, path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            if path not in raw_paths:
                assert response.status_code == status, (method, path, raw[:20], response.text)
                checked += 1
    assert checked >= 4 * (len(routes) - len(raw_paths))


# Hypothesis: any text a client might send — whatever Unicode — is either accepted by the edge or
# refused with the field named; never an exception other than the refusal.
_TEXT = st.text(alphabet=st.characters(codec=None), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_TEXT, name=st.text(max_size=10))
def test_inspection_of_any_text_either_passes_or_names_the_field(value: str, name: str) -> None:
    try:
        body = msgspec.json.encode({"form": {name: [value]}})
    except UnicodeEncodeError:
        return  # not representable as UTF-8 JSON: the client cannot send it
    try:
        check_json(body)
    except InputRefused as refused:
        assert refused.status == 400 and refused.field is not None
        assert any(
            0xD800 <= ord(c) <= 0xDFFF or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name + value
        )
    else:
        allowed = "\t\n\r"
        assert all(
            c in allowed or not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF)
            for c in name + value
        )


@pytest.mark.parametrize("depth", [31, 32, 33, 2000])
def test_depth_limit_is_exact(depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    if depth <= 32:
        check_json(body)
    else:
        with pytest.raises(InputRefused):
            check_json(body)


async def test_any_text_in_a_stored_field_is_stored_or_refused_never_a_5xx(client) -> None:
    """Hypothesis over a route whose text reaches PostgreSQL (a kiosk's name): any Unicode a
    client can send — NUL, controls, surrogates escaped in JSON, emoji, RTL marks — is either
    stored as sent or refused with a 400 naming `$.name`."""
    loop = asyncio.get_running_loop()
    headers = staff_headers(client)
    outcomes: list[int] = []

    async def register(name: str) -> httpx.Response:
        kiosk = Kiosk()
        body = {
            "kioskId": kiosk.id,
            "name": name,
            "hallId": "hall-430102-01",
            "publicKey": kiosk.public_key_b64,
        }
        raw = msgspec.json.encode(body)
        return await client.post(
            "/api/v1/staff/kiosks", content=raw, headers={**headers, "content-type": "application/json"}
        )

    names = st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
        st.text(
            alphabet=st.sampled_from(["\x00", "\x1f", "\x7f", "\u0085", "\u202e", "办", "a", " "]),
            min_size=1,
            max_size=8,
        ),
    )

    @settings(max_examples=80, deadline=None, derandomize=True, database=None)
    @given(name=names)
    def check(name: str) -> None:
        response = asyncio.run_coroutine_threadsafe(register(name), loop).result(30)
        outcomes.append(response.status_code)
        assert response.status_code < 500, (name, response.text)
        if _CONTROL.search(name):
            assert response.status_code == 400 and response.json()["field"] == "$.name", (name, response.text)

    await asyncio.to_thread(check)
    assert 201 in outcomes and 400 in outcomes, outcomes


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
