"""Abuse that costs others nothing (issue 9 section 2)."""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter

import httpx
import pytest

from tests.auth_helpers import (
    REDIRECT_URI,
    kiosk_payload,
    kiosk_post,
    login_resident,
    new_resident,
    pkce,
    register_kiosk,
    staff_headers,
)
from tests.conftest import free_port, start_process, stop_process, wait_http
from tests.test_journey_helpers import PDF, auth, key, serve_env, upstream_urls


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url))


def _malformed(n: int) -> list[str]:
    """Codes no identity provider ever issued: control characters, non-ASCII, spaces, too short,
    quotes and markup, bidi overrides: what made the upstream answer 5xx before."""
    shapes = [
        "abc\x00defghijk",
        "\x00" * 12,
        "代码代码代码代码代码",
        "abc defghijk",
        "x'\"; DROP TABLE--",
        "\u202eabcdefghij",
        "short",
        "<script>\talert(1)</script>",
        "line\r\nbreak-here",
        "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f",
    ]
    return [shapes[i % len(shapes)] + ("" if i < len(shapes) else f"\x00{i}") for i in range(n)]


async def test_100_malformed_anonymous_logins_then_a_real_login_succeeds(client, sandbox) -> None:
    verifier, _ = pkce()
    answers = []
    for i, code in enumerate(_malformed(100)):
        if i % 2:
            body = {"code": code, "codeVerifier": verifier, "redirectUri": REDIRECT_URI}
            answers.append(await client.post("/api/v1/auth/app/login", json=body))
        else:
            answers.append(await client.post("/api/v1/auth/wechat/login", json={"code": code}))
    statuses = {r.status_code for r in answers}
    assert statuses == {400}, [(r.status_code, r.text) for r in answers if r.status_code != 400][:3]
    assert {r.json()["code"] for r in answers} == {"validation_failed"}
    # Refused as the caller's input, naming the field: by the login's own check, or (control characters)
    # by the edge's inspection of every body, whichever sees it first.
    assert all(_names(r.json(), "code") for r in answers)
    # Refused before any upstream heard of them: both breakers are closed and real residents log in,
    # on both channels (and the malformed ones did not use up this address's login limit either).
    ready = (await client.get("/readyz")).json()
    assert "open" not in str(ready.get("upstreams", ready)), ready
    app = await login_resident(client, sandbox, channel="app", level=3)
    mini = await login_resident(client, sandbox, channel="miniprogram", level=3)
    assert app["access_token"] and mini["access_token"]


async def test_a_malformed_phone_code_or_redirect_uri_is_refused_before_the_upstream(client, sandbox) -> None:
    verifier, _ = pkce()
    bad_uri = await client.post(
        "/api/v1/auth/app/login",
        json={"code": "A" * 32, "codeVerifier": verifier, "redirectUri": "https://x.example/\x00cb"},
    )
    assert bad_uri.status_code == 400 and _names(bad_uri.json(), "redirectUri"), bad_uri.text
    bad_phone = await client.post(
        "/api/v1/auth/wechat/phone", json={"code": "\x00" * 20, "bindingToken": "t" * 40}
    )
    assert bad_phone.status_code == 400 and _names(bad_phone.json(), "code"), bad_phone.text


# --- per-person write limits, across replicas ---


async def _upload(client: httpx.AsyncClient, who: dict, idem: str, size: int = 0) -> httpx.Response:
    # Padding as a comment inside the file (bytes after %%EOF would make it a polyglot, refused).
    content = PDF.replace(b"\ntrailer", b"\n%" + b"0" * size + b"\ntrailer")
    return await client.post(
        "/api/v1/uploads",
        params={"name": "申请表.pdf"},
        content=content,
        headers=auth(who, idem, **{"Content-Type": "application/pdf"}),
    )


async def test_the_write_limit_is_one_per_person_across_two_instances(
    make_client, sandbox_url, sandbox
) -> None:
    """Two app instances (each its own Redis client, one Redis): 30 uploads at once, 15 on each,
    against a limit of 10 per minute: exactly 10 are taken in all, the rest 429 with Retry-After;
    a replay of a taken key still answers; another person is not affected."""
    first = await make_client(**upstream_urls(sandbox_url), write_rate_per_user=10, write_rate_window_s=60.0)
    second = await make_client(**upstream_urls(sandbox_url), write_rate_per_user=10, write_rate_window_s=60.0)
    who = await login_resident(first, sandbox, level=3)
    keys = [key() for _ in range(30)]
    answers = await asyncio.gather(*(_upload((first, second)[i % 2], who, k) for i, k in enumerate(keys)))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 10, 429: 20}, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
    assert {r.json()["code"] for r in answers if r.status_code == 429} == {"rate_limited"}
    done = next(k for k, r in zip(keys, answers, strict=True) if r.status_code == 201)
    replay = await _upload(second, who, done)
    assert replay.status_code == 201 and replay.headers.get("idempotent-replayed") == "true"
    other = await login_resident(second, sandbox, level=3)
    assert (await _upload(first, other, key())).status_code == 201


# --- uploads: a quota per person, expiry of uploads no case used ---


async def test_uploads_have_a_quota_and_unused_ones_expire(
    make_client, sandbox_url, sandbox, db, services
) -> None:
    client = await make_client(
        **upstream_urls(sandbox_url), upload_quota_count=3, upload_quota_bytes=10_000, write_rate_per_user=0
    )
    who = await login_resident(client, sandbox, level=3)
    made = [await _upload(client, who, key()) for _ in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    over = await _upload(client, who, key())
    assert over.status_code == 409 and over.json()["code"] == "upload_quota_exceeded", over.text
    # Bytes count too: another person, one big file then a second that would pass the byte quota.
    other = await login_resident(client, sandbox, level=3)
    assert (await _upload(client, other, key(), size=6000)).status_code == 201
    big = await _upload(client, other, key(), size=6000)
    assert big.status_code == 409 and big.json()["code"] == "upload_quota_exceeded", big.text

    # A day later the unused uploads expire: rows and files go, and the quota is free again.
    ids = [r.json()["id"] for r in made]
    await db.execute(
        "UPDATE bff.uploads SET created_at = created_at - interval '2 days' WHERE person_id = $1",
        who["person_id"],
    )
    from adapters import context
    from bff.wiring import open_root
    from tests.conftest import make_settings

    async with open_root(make_settings(services, sandbox_url, **upstream_urls(sandbox_url))) as root:
        job = {j.name: j for j in root.jobs}["uploads_expire"]
        assert job.run == root.uploads.expire
        directory = root.uploads.directory
        stored = [
            directory / r["storage_key"]
            for r in await db.fetch(
                "SELECT storage_key FROM bff.uploads WHERE id::text = ANY($1::text[])", ids
            )
        ]
        assert all(p.exists() for p in stored) and len(stored) == 3
        with context.budget(job.budget):
            assert await job.run() >= 3
    assert await db.fetchval("SELECT count(*) FROM bff.uploads WHERE id::text = ANY($1::text[])", ids) == 0
    assert not any(p.exists() for p in stored)
    assert (await _upload(client, who, key())).status_code == 201


# --- whose X-Forwarded-For is believed ---


async def _logins(url: str, forwarded: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as api:
        return [
            (
                await api.post(
                    "/api/v1/auth/wechat/login", json={"code": "A" * 32}, headers={"X-Forwarded-For": address}
                )
            ).status_code
            for address in forwarded
        ]


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "none"])
async def test_x_forwarded_for_is_believed_from_trusted_proxies_only(
    services, sandbox_url, trusted: bool
) -> None:
    """The per-IP login limit (3 here) keys on the forwarded client only when the peer (here
    127.0.0.1, the 'load balancer') is a trusted proxy; otherwise on the peer itself."""
    port = free_port()
    env = serve_env(
        services,
        sandbox_url,
        port,
        AUTH_RATE_PER_IP="3",
        TRUSTED_PROXIES="127.0.0.1" if trusted else "none",
        API_WORKERS="1",
        LOG_LEVEL="WARNING",
    )
    proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-proxies")
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
        a, b = (
            f"198.51.{random.randint(0, 255)}.{random.randint(1, 254)}",
            f"198.51.{random.randint(0, 255)}.7",
        )
        statuses = await _logins(f"http://127.0.0.1:{port}", [a, a, a, a, b])
    finally:
        stop_process(proc)
    assert statuses[3] == 429  # a fourth login from one client in the window
    if trusted:
        assert statuses[:3] == [401, 401, 401]  # a well-formed code WeChat does not know
        assert statuses[4] == 401  # another client behind the same balancer is not limited
    else:
        assert statuses[4] == 429  # everybody behind the untrusted peer is one client


# --- a shared hall kiosk: failures lock one ID card at that kiosk, never the kiosk ---


async def test_failed_face_matches_lock_one_card_at_one_kiosk_and_staff_see_the_attack(
    make_client, sandbox
) -> None:
    client = await make_client(auth_lockout_failures=3, auth_lockout_s=120)
    hall_kiosk, other_kiosk = await register_kiosk(client), await register_kiosk(client)
    attacker, neighbour = await new_resident(sandbox), await new_resident(sandbox)
    path = "/api/v1/auth/kiosk/login"
    for _ in range(3):
        bad = await kiosk_post(client, hall_kiosk, path, kiosk_payload(attacker, score=0.1))
        assert bad.status_code == 401 and bad.json()["code"] == "face_match_failed", bad.text
    # That card is locked at that kiosk, even with a good match...
    locked = await kiosk_post(client, hall_kiosk, path, kiosk_payload(attacker))
    assert locked.status_code == 429 and locked.json()["code"] == "locked_out", locked.text
    # ...but the next resident in the queue logs in at the same kiosk, and the card works elsewhere.
    after = await kiosk_post(client, hall_kiosk, path, kiosk_payload(neighbour))
    assert after.status_code == 200, after.text
    elsewhere = await kiosk_post(client, other_kiosk, path, kiosk_payload(attacker))
    assert elsewhere.status_code == 200, elsewhere.text

    view = await client.get(
        "/api/v1/staff/kiosks/attacks", params={"minutes": 10, "threshold": 3}, headers=staff_headers(client)
    )
    assert view.status_code == 200, view.text
    found = {k["kioskId"]: k for k in view.json()}
    assert found[hall_kiosk.id]["failures"] == 3 and found[hall_kiosk.id]["lockedCards"] == 1
    assert other_kiosk.id not in found
    resident = await login_resident(client, sandbox, level=3)
    refused = await client.get("/api/v1/staff/kiosks/attacks", headers=auth(resident))
    assert refused.status_code in (401, 403), refused.text


# --- every 503 says when to come back ---


@pytest.mark.parametrize("upstream", ["idp", "wechat", "catalogue"])
async def test_every_503_carries_retry_after(client, sandbox, upstream: str) -> None:
    verifier, _ = pkce()
    calls = {
        "idp": (
            "POST",
            "/api/v1/auth/app/login",
            {"code": "A" * 32, "codeVerifier": verifier, "redirectUri": REDIRECT_URI},
        ),
        "wechat": ("POST", "/api/v1/auth/wechat/login", {"code": "A" * 32}),
        # A guide the mirror does not hold is asked of the catalogue (the mirror answers the rest).
        "catalogue": ("GET", "/api/v1/items/ZZ-NOT-MIRRORED", None),
    }
    method, path, body = calls[upstream]
    await sandbox.put(f"/_control/faults/{upstream}", json={"errorRate": 1.0, "errorKind": "503"})
    try:
        seen, others = [], []
        for _ in range(12):  # through the failures and on into the open breaker
            answer = await client.request(method, path, json=body)
            (seen if answer.status_code == 503 else others).append(answer)
    finally:
        await sandbox.delete(f"/_control/faults/{upstream}")
    assert seen, (
        "the upstream's 503 never reached the client",
        [(a.status_code, a.text) for a in others[:2]],
    )
    assert all(int(a.headers["retry-after"]) >= 1 for a in seen), [dict(a.headers) for a in seen][:2]


def _names(problem: dict[str, object], field: str) -> bool:
    """The problem document names `field`: `field: …` in its detail, or the JSON path `$.field`."""
    return str(problem.get("detail", "")).startswith(f"{field}:") or problem.get("field") == f"$.{field}"
