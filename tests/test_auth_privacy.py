"""Personal data: masked in every response and log line, encrypted at rest with a blind index (a dump
of the schema holds no plaintext), session_key never out; the audit log's hash chain detects edits."""

from __future__ import annotations

import base64
import os
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from auth.audit import record, verify_chain
from auth.crypto import CryptoError, PiiCrypto
from bff.platform.settings import Settings
from tests import conftest
from tests.auth_helpers import (
    KNOWN_PII,
    KNOWN_SECRETS,
    bearer,
    login_resident,
    new_resident,
    phone_code,
    wechat_code,
)
from tests.auth_pii_scan import leaks
from tests.conftest import dump_schema
from tests.test_journey_helpers import application, auth, bookable_item, key, upstream_urls


async def test_no_personal_data_or_session_key_in_responses_or_logs(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    start_responses, start_lines = len(conftest.SEEN_RESPONSES), len(conftest.SEEN_LOG_LINES)
    logins = [
        await login_resident(client, sandbox, channel=c, level=3) for c in ("app", "miniprogram", "kiosk")
    ]
    for who in logins:
        extra = who["kiosk"].headers("GET", "/api/v1/me") if "kiosk" in who else {}
        assert (await client.get("/api/v1/me", headers={**bearer(who), **extra})).status_code == 200
    # Error paths carry the values too: a phone unknown to the provider, a bad phone code.
    minted = await wechat_code(sandbox)
    first = (await client.post("/api/v1/auth/wechat/login", json={"code": minted["code"]})).json()
    stranger = "13" + "".join(str(d) for d in os.urandom(9))[:9]
    KNOWN_PII.add(stranger)
    code = await phone_code(sandbox, stranger)
    missing = await client.post(
        "/api/v1/auth/wechat/phone", json={"code": code, "bindingToken": first["bindingToken"]}
    )
    assert missing.status_code == 404
    user = (await sandbox.get(f"/_control/wechat/users/{minted['openid']}")).json()
    KNOWN_SECRETS.add(user["sessionKey"])
    bodies = [b.decode("utf-8", "replace") for _, _, _, b in conftest.SEEN_RESPONSES[start_responses:]]
    lines = conftest.SEEN_LOG_LINES[start_lines:]
    assert len(bodies) >= 10 and lines
    assert not leaks(bodies + lines, by_pattern=True)
    # The scan is not blind: it finds what it looks for.
    assert leaks([f'{{"phone": "{stranger}"}}']) and leaks(
        [logins[0]["resident"]["id_card_number"]], by_pattern=True
    )


async def test_database_dump_holds_no_plaintext(
    make_client: Any, sandbox: httpx.AsyncClient, sandbox_url: str, services: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(**upstream_urls(sandbox_url))
    who = await login_resident(client, sandbox, channel="app", level=3)
    resident = who["resident"]
    # An application whose contact the BFF fills in from the verified profile: the dump holds it
    # whatever ran before this test.
    body = await application(client, who, await bookable_item(db))
    body["form"] = {}
    applied = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    assert applied.status_code == 201, applied.text
    dump = await dump_schema(services.database_url, "bff")
    assert who["person_id"] in dump  # the dump is of the right database
    for value in [resident["id_card_number"], resident["phone_number"], resident["name"], *KNOWN_PII]:
        assert value not in dump
    # Column names (`session_key_enc`) are fine here; values are what must not appear.
    assert not leaks([dump], by_pattern=True, field_names=False)


async def test_lookup_by_blind_index(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, channel="app")
    crypto = client.app.state.auth.crypto  # type: ignore[attr-defined]
    row = await db.fetchrow(
        "SELECT id, id_number_enc FROM bff.persons WHERE id_number_bidx = $1",
        crypto.blind_index("id_number", who["resident"]["id_card_number"].lower()),
    )
    assert str(row["id"]) == who["person_id"]
    assert crypto.decrypt("id_number", row["id_number_enc"]) == who["resident"]["id_card_number"]


@pytest.mark.parametrize("algorithm,size", [("aes-gcm", 32), ("sm4-gcm", 16)])
def test_cipher_roundtrip_binding_and_rotation(algorithm: Any, size: int) -> None:
    old, new, index = os.urandom(size), os.urandom(size), os.urandom(32)
    before = PiiCrypto(algorithm, {"k1": old}, "k1", index)
    blob = before.encrypt("id_number", "43010219900307123X")
    assert b"43010219900307123X" not in blob
    assert before.decrypt("id_number", blob) == "43010219900307123X"
    with pytest.raises(CryptoError):
        before.decrypt("phone", blob)  # a value moved to another column does not decrypt
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CryptoError):
        before.decrypt("id_number", tampered)
    after = PiiCrypto(algorithm, {"k1": old, "k2": new}, "k2", index)
    assert after.decrypt("id_number", blob) == "43010219900307123X"  # old rows stay readable
    assert after.encrypt("phone", "13800138000")[2:4] == b"k2"
    assert before.blind_index("id_number", "43010219900307123x") == after.blind_index(
        "id_number", "43010219900307123X"
    )
    assert before.blind_index("phone", "13800138000") != before.blind_index("id_number", "13800138000")


def test_prod_requires_real_keys() -> None:
    with pytest.raises(msgspec.ValidationError, match="auth_signing_keys"):
        Settings(env="prod")
    key = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(msgspec.ValidationError, match="pii_keys"):
        Settings(env="prod", auth_signing_keys=["k1:AAAA"], auth_active_kid="k1")
    with pytest.raises(msgspec.ValidationError, match="audit_anchor_key"):
        Settings(
            env="prod",
            auth_signing_keys=["k1:AAAA"],
            auth_active_kid="k1",
            pii_keys=[f"p1:{key}"],
            pii_active_key="p1",
            pii_index_key=key,
        )
    Settings(
        env="prod",
        auth_signing_keys=["k1:AAAA"],
        auth_active_kid="k1",
        pii_keys=[f"p1:{key}"],
        pii_active_key="p1",
        pii_index_key=key,
        audit_anchor_key=key,
        cursor_key=key,
        wechat_secret="real-wechat-secret",
        idp_client_secret="real-idp-secret",
        case_webhook_secret="real-webhook-secret",
        wechatpay_apiv3_key="real-apiv3-key-0123456789abcdefg",
        wechatpay_merchant_key_file="/run/secrets/wechatpay_key.pem",
        courier_webhook_secret="real-courier-secret",
        hotline_channel_key="real-hotline-key",
        hotline_webhook_secret="real-hotline-secret",
        pushgw_app_key="real-app-key",
        pushgw_secret="real-pushgw-secret",
        sms_access_key_id="real-sms-key",
        sms_secret="real-sms-secret",
        elicence_secret="real-elicence-secret",
        licence_show_key="real-licence-show-key",
    )
    with pytest.raises(msgspec.ValidationError, match="auth_access_ttl_s"):
        Settings(auth_access_ttl_s=601)


async def test_audit_chain_detects_an_edited_row(db: asyncpg.Connection) -> None:
    for i in range(3):
        await record(
            db, subject="p-1", action="test", object=f"o-{i}", result="ok", channel="app", request_id="rid-1"
        )
    assert await verify_chain(db) is None
    seq = await db.fetchval("SELECT max(seq) FROM bff.audit_log") - 1
    # The table refuses edits and deletes outright…
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("UPDATE bff.audit_log SET result = 'denied' WHERE seq = $1", seq)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("DELETE FROM bff.audit_log WHERE seq = $1", seq)
    # …and an edit made behind its back (a superuser disabling triggers) is found by the chain check.
    original = await db.fetchval("SELECT result FROM bff.audit_log WHERE seq = $1", seq)
    await db.execute("SET session_replication_role = replica")
    try:
        await db.execute("UPDATE bff.audit_log SET result = 'denied' WHERE seq = $1", seq)
        assert await verify_chain(db) == seq
        await db.execute("UPDATE bff.audit_log SET result = $2 WHERE seq = $1", seq, original)
    finally:
        await db.execute("SET session_replication_role = DEFAULT")
    assert await verify_chain(db) is None


async def test_audit_chain_has_no_forks_under_concurrency(services: Any) -> None:
    pool = await asyncpg.create_pool(services.database_url, min_size=4, max_size=8)
    assert pool is not None
    try:
        import asyncio

        await asyncio.gather(
            *[
                record(pool, subject=f"p-{i}", action="test", object="o", result="ok", channel="app")
                for i in range(40)
            ]
        )
        async with pool.acquire() as conn:
            assert await verify_chain(conn) is None
    finally:
        await pool.close()


async def test_every_login_and_refresh_is_audited(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    resident = await new_resident(sandbox)
    who = await login_resident(client, sandbox, channel="app", resident=resident)
    refreshed = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert refreshed.status_code == 200
    await client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {refreshed.json()['accessToken']}"}
    )
    rows = await db.fetch("SELECT * FROM bff.audit_log WHERE subject = $1 ORDER BY seq", who["person_id"])
    actions = [(r["action"], r["result"], r["channel"]) for r in rows]
    assert ("login", "success", "app") in actions
    assert ("refresh", "rotated", "app") in actions
    assert ("logout", "ended_1", "app") in actions
    assert all(r["request_id"] != "-" and r["at"].tzinfo is not None for r in rows)
