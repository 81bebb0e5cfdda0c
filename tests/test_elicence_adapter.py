"""The e-licence library's client over real HTTP against the sandbox: signed calls (the base URL's
path is part of what is signed), typed answers, refusals decoded with their code (and, for a
refused check, the use it recorded), and the shared resilience layer: an unreachable library is a
503 problem and trips the breaker, which then answers without sending."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.elicence.client import ElicenceClient, ElicenceRefused
from adapters.errors import NotSent, UpstreamUnavailable
from adapters.http import Policy, Upstream
from tests.test_sandbox_elicence import DEPT, DRIVING, id_number

SECRET = "sandbox-elicence-secret"


@pytest.fixture
async def library(sandbox_url: str) -> AsyncIterator[ElicenceClient]:
    upstream = Upstream("elicence", f"{sandbox_url}/elicence", Policy())
    await upstream.start()
    try:
        yield ElicenceClient(upstream, "sanxiang-bff", SECRET)
    finally:
        await upstream.close()


async def add_licence(sandbox: httpx.AsyncClient, holder: str, **extra: object) -> dict[str, object]:
    body = {"type_code": DRIVING, "holder_code": holder, "holder_name": "测试员", "issuer": "jj", **extra}
    made = await sandbox.post("/_control/elicence/licences", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def test_list_get_grant_verify_and_the_usage_report(
    library: ElicenceClient, sandbox: httpx.AsyncClient
) -> None:
    holder = id_number()
    made = await add_licence(sandbox, holder, valid_to="2031-05-01", trust_grade="B")
    found = await library.licences(holder)
    assert found.total == 1 and found.licences[0].licence_id == made["licence_id"]
    one = await library.licence(str(made["licence_id"]))
    assert (one.trust_grade, one.valid_to, one.long_term, one.status) == ("B", "2031-05-01", False, "valid")

    rid = "RQ" + secrets.token_hex(8)
    code = await library.grant(
        request_id=rid, licence_id=one.licence_id, holder_code=holder, purpose="亮证", ttl_s=120
    )
    again = await library.grant(
        request_id=rid, licence_id=one.licence_id, holder_code=holder, purpose="亮证", ttl_s=120
    )
    assert again.auth_code == code.auth_code  # the request id de-duplicates a retried grant
    checked = await library.verify(
        request_id="VR" + secrets.token_hex(8),
        auth_code=code.auth_code,
        purpose="窗口核验",
        channel="window",
        **DEPT,
    )
    assert checked.result == "verified" and checked.licence.licence_id == one.licence_id
    with pytest.raises(ElicenceRefused) as used:
        await library.verify(
            request_id="VR" + secrets.token_hex(8),
            auth_code=code.auth_code,
            purpose="窗口核验",
            channel="window",
            **DEPT,
        )
    assert used.value.reason == "auth_code_used" and used.value.status == 409
    assert used.value.refusal.usage_id is not None

    page = await library.usages(holder, 0)
    assert [(u.usage_id, u.result) for u in page.usages] == [
        (checked.verification_id, "verified"),
        (used.value.refusal.usage_id, "refused"),
    ]
    assert page.usages[0].department_name == DEPT["department_name"]
    assert (await library.usages(holder, page.next_since)).usages == []


async def test_refusals_carry_the_library_code(library: ElicenceClient, sandbox: httpx.AsyncClient) -> None:
    with pytest.raises(ElicenceRefused) as missing:
        await library.licence("EL0000000000000000")
    assert (missing.value.status, missing.value.reason) == (404, "licence_not_found")
    with pytest.raises(ElicenceRefused) as bad_holder:
        await library.licences("430104199001011234")
    assert bad_holder.value.reason == "bad_holder_code"
    wrong = ElicenceClient(library.upstream, "sanxiang-bff", "not-the-secret")
    with pytest.raises(ElicenceRefused) as unsigned:
        await wrong.licences(id_number())
    assert (unsigned.value.status, unsigned.value.reason) == (401, "unauthenticated")


async def test_an_unreachable_library_is_unavailable_and_opens_the_breaker() -> None:
    policy = Policy(call_timeout=0.3, max_retries=0, minimum_calls=2, failure_rate=0.5)
    upstream = Upstream("elicence", "http://127.0.0.1:9/elicence", policy)
    await upstream.start()
    try:
        client = ElicenceClient(upstream, "sanxiang-bff", SECRET)
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable):
                await client.licences(id_number())
        with pytest.raises(NotSent):
            await client.licences(id_number())
    finally:
        await upstream.close()
