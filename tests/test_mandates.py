"""代办 mandates (issue 15 §3–4), over the app with real PostgreSQL, Redis and the sandbox's case
system, booking system and WeChat Pay over HTTP.

What must be shown: every route an agent may call, with and without the action in the mandate's
scope (never more than the scope: a 403 problem and nothing written otherwise); after expiry and
after revocation (on the next request, on a second app instance too); both names in every audit
record of an agent's action; every other route refuses acting; self-grant, a chain, and bad input
refused with nothing written; a guardian mandate unusable until its proof is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.handlers import HTTPRouteHandler

from auth.acting import OPT_ACTION
from tests.auth_helpers import login_resident, staff_headers
from tests.delivery_helpers import ensure_mirror
from tests.payment_helpers import Relay, case_with_fee, payment_client
from tests.test_journey_helpers import application, auth, bookable_item, first_slot, key

ACTIONS = ("read_cases", "apply", "book", "pay")
MANDATES = "/api/v1/me/mandates"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = await Relay().start()
    yield r
    await r.stop()


@pytest.fixture
async def client(make_client: Any, sandbox_url: str, relay: Relay) -> httpx.AsyncClient:
    made: httpx.AsyncClient = await payment_client(make_client, sandbox_url, relay)
    return made


def expiry(days: float = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def invite(client: httpx.AsyncClient, agent: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post(f"{MANDATES}/invites", headers=auth(agent, key(), **headers))


async def grant(
    client: httpx.AsyncClient,
    principal: dict[str, Any],
    agent: dict[str, Any],
    actions: list[str],
    *,
    kind: str = "family",
    accept: bool = True,
) -> dict[str, Any]:
    made = await invite(client, agent)
    assert made.status_code == 201, made.text
    granted = await client.post(
        MANDATES,
        json={"inviteCode": made.json()["code"], "actions": actions, "expiresAt": expiry(), "kind": kind},
        headers=auth(principal, key()),
    )
    assert granted.status_code == 201, granted.text
    body: dict[str, Any] = granted.json()
    assert body["status"] == "offered" and body["role"] == "principal"
    assert body["agent"]["personId"] == agent["person_id"]
    if accept:
        accepted = await client.post(f"{MANDATES}/{body['id']}/accept", headers=auth(agent, key()))
        assert accepted.status_code == 200, accepted.text
        body = accepted.json()
    return body


def acting(mandate_id: str, rid: str | None = None) -> dict[str, str]:
    return {"X-Acting-For": mandate_id, "X-Request-Id": rid or key()}


async def counts(db: asyncpg.Connection, person_id: str) -> tuple[int, ...]:
    return tuple(
        [
            int(await db.fetchval(f"SELECT count(*) FROM bff.{table} WHERE person_id = $1", person_id))
            for table in ("cases", "appointments", "payment_orders", "appointment_holds")
        ]
    )


async def problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code, response.text


class Scene:
    """A principal with a case owing a fee, and an agent (both app sessions at L3)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        db: asyncpg.Connection,
        principal: dict[str, Any],
        agent: dict[str, Any],
        case_id: str,
        item: dict[str, str],
    ) -> None:
        self.client, self.db, self.principal, self.agent = client, db, principal, agent
        self.case_id, self.item = case_id, item
        # What the agent made so far (read back by the routes that take an id); before anything is
        # made a random id stands in: the scope is refused before any lookup.
        self.made: dict[str, str] = {}

    def made_id(self, what: str) -> str:
        return self.made.get(what, str(uuid.uuid4()))

    def routes(self) -> dict[str, list[Callable[[dict[str, str]], Awaitable[httpx.Response]]]]:
        """Each honoured route, by the action it needs: a call as the agent with `headers`."""
        c, agent = self.client, self.agent

        async def list_cases(h: dict[str, str]) -> httpx.Response:
            return await c.get("/api/v1/cases", headers=auth(agent, **h))

        async def get_case(h: dict[str, str]) -> httpx.Response:
            return await c.get(f"/api/v1/cases/{self.case_id}", headers=auth(agent, **h))

        async def apply(h: dict[str, str]) -> httpx.Response:
            # The principal's own scanned materials (uploads are theirs), sent by the agent.
            body = await application(c, self.principal, self.item)
            return await c.post("/api/v1/cases", json=body, headers=auth(agent, key(), **h))

        async def book(h: dict[str, str]) -> httpx.Response:
            slot = await first_slot(c, self.principal, self.item)
            return await c.post(
                "/api/v1/appointments", json={"slotId": slot}, headers=auth(agent, key(), **h)
            )

        async def hold(h: dict[str, str]) -> httpx.Response:
            slot = await first_slot(c, self.principal, self.item, day_index=1)
            return await c.post(
                "/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(agent, key(), **h)
            )

        async def list_appointments(h: dict[str, str]) -> httpx.Response:
            return await c.get("/api/v1/appointments", headers=auth(agent, **h))

        async def get_appointment(h: dict[str, str]) -> httpx.Response:
            return await c.get(
                f"/api/v1/appointments/{self.made_id('appointment')}", headers=auth(agent, **h)
            )

        async def pay(h: dict[str, str]) -> httpx.Response:
            return await c.post(f"/api/v1/cases/{self.case_id}/payments", headers=auth(agent, key(), **h))

        async def get_payment(h: dict[str, str]) -> httpx.Response:
            return await c.get(f"/api/v1/payments/{self.made_id('payment')}", headers=auth(agent, **h))

        return {
            "read_cases": [list_cases, get_case],
            "apply": [apply],
            "book": [book, hold, list_appointments, get_appointment],
            "pay": [pay, get_payment],
        }


@pytest.fixture
async def scene(client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection) -> Scene:
    principal = await login_resident(client, sandbox, channel="app", level=3)
    agent = await login_resident(client, sandbox, channel="app", level=3)
    case, _ = await case_with_fee(client, sandbox, db, principal)
    return Scene(client, db, principal, agent, case["case"]["id"], await bookable_item(db))


async def test_every_honoured_route_with_and_without_its_action_never_more_than_the_scope(
    scene: Scene, db: asyncpg.Connection
) -> None:
    client, principal, agent = scene.client, scene.principal, scene.agent
    routes = scene.routes()
    # The routes the app honours X-Acting-For on are exactly those this matrix drives.
    honoured = {
        (method, route.path, handler.opt[OPT_ACTION])
        for route in client.app.routes  # type: ignore[attr-defined]
        for handler in getattr(route, "route_handlers", ())
        if isinstance(handler, HTTPRouteHandler) and OPT_ACTION in handler.opt
        for method in handler.http_methods
    }
    assert honoured == {
        ("GET", "/api/v1/cases", "read_cases"),
        ("GET", "/api/v1/cases/{case_id:str}", "read_cases"),
        ("POST", "/api/v1/cases", "apply"),
        ("POST", "/api/v1/appointments/holds", "book"),
        ("POST", "/api/v1/appointments", "book"),
        ("GET", "/api/v1/appointments", "book"),
        ("GET", "/api/v1/appointments/{appointment_id:str}", "book"),
        ("POST", "/api/v1/cases/{case_id:str}/payments", "pay"),
        ("GET", "/api/v1/payments/{payment_id:str}", "pay"),
    }
    for action in ACTIONS:
        # Everything but `action`: each of its routes refused, nothing written for anyone.
        without = await grant(client, principal, agent, [a for a in ACTIONS if a != action])
        assert without["status"] == "active"
        before = await counts(db, principal["person_id"]), await counts(db, agent["person_id"])
        for call in routes[action]:
            await problem(await call(acting(without["id"])), 403, "mandate_out_of_scope")
        assert (await counts(db, principal["person_id"]), await counts(db, agent["person_id"])) == before

    # Exactly `action`: its routes answer, for the principal, and every audit row names both.
    seen: dict[str, Any] = {}
    for action in ACTIONS:
        only = await grant(client, principal, agent, [action])
        for call in routes[action]:
            rid = key()
            answer = await call(acting(only["id"], rid))
            assert answer.status_code in (200, 201), (action, answer.text)
            seen[f"{action}:{call.__name__}"] = answer.json()
            if call.__name__ in ("book", "pay"):
                scene.made["appointment" if action == "book" else "payment"] = answer.json()["id"]
            rows = await db.fetch(
                "SELECT subject, action, channel FROM bff.audit_log WHERE request_id = $1", rid
            )
            for row in rows:
                assert row["subject"] == principal["person_id"], (action, dict(row))
                assert f"agent={agent['person_id']}" in row["channel"], (action, dict(row))
                assert f"mandate={only['id']}" in row["channel"]
            assert f"acting.{action}" in {r["action"] for r in rows}, (action, [dict(r) for r in rows])
        # The other actions stay out of reach under this mandate.
        for other in ACTIONS:
            if other != action:
                await problem(await routes[other][0](acting(only["id"])), 403, "mandate_out_of_scope")

    listed = seen["read_cases:list_cases"]["items"]
    assert [c["id"] for c in listed] == [scene.case_id]  # the principal's cases, not the agent's
    assert seen["read_cases:get_case"]["case"]["id"] == scene.case_id
    new_case = seen["apply:apply"]["case"]["id"]
    assert (
        await db.fetchval("SELECT person_id FROM bff.cases WHERE id = $1::uuid", new_case)
        == (principal["person_id"])
    )
    booked = seen["book:book"]["id"]
    assert (
        await db.fetchval("SELECT person_id FROM bff.appointments WHERE id = $1::uuid", booked)
        == (principal["person_id"])
    )
    assert [a["id"] for a in seen["book:list_appointments"]["items"]] == [booked]
    assert seen["book:get_appointment"]["id"] == booked
    assert seen["pay:pay"]["caseId"] == scene.case_id
    assert seen["pay:get_payment"]["id"] == seen["pay:pay"]["id"]
    assert await counts(db, agent["person_id"]) == (0, 0, 0, 0)  # nothing landed in the agent's name


async def test_every_other_route_refuses_acting(scene: Scene, db: asyncpg.Connection) -> None:
    client, agent = scene.client, scene.agent
    mandate = await grant(client, scene.principal, agent, list(ACTIONS))
    h = acting(mandate["id"])
    # Every route that knows its caller and declares no action: taken from the app, so a new
    # route is in this test the day it is added.
    refused = chained = 0
    for route in client.app.routes:  # type: ignore[attr-defined]
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or not route.path.startswith("/api/"):
                continue
            if "principal" not in handler.parsed_fn_signature.parameters or OPT_ACTION in handler.opt:
                continue
            path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
            for method in handler.http_methods - {"HEAD", "OPTIONS"}:
                body = {} if method in ("POST", "PUT", "PATCH") else None
                answer = await client.request(method, path, headers=auth(agent, key(), **h), json=body)
                expected = "mandate_chain" if route.path.startswith(MANDATES) else "acting_not_allowed"
                await problem(answer, 403, expected)
                refused += 1
                chained += expected == "mandate_chain"
    assert refused > 40 and chained == 5
    # Passing the mandate on, or managing mandates in the principal's name: a chain.
    for method, path in (("GET", MANDATES), ("POST", f"{MANDATES}/invites"), ("POST", MANDATES)):
        answer = await client.request(
            method,
            path,
            headers=auth(agent, key(), **h),
            json={"inviteCode": "ABCDEFGH", "actions": ["read_cases"], "expiresAt": expiry()}
            if path == MANDATES
            else None,
        )
        await problem(answer, 403, "mandate_chain")
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE subject = $1 AND result = 'mandate_chain'",
            agent["person_id"],
        )
        == chained + 3
    )
    # Someone else's mandate (here the principal's own, sent by them), or nonsense: unknown.
    await problem(
        await client.get("/api/v1/cases", headers=auth(scene.principal, **acting(mandate["id"]))),
        403,
        "mandate_unknown",
    )
    await problem(
        await client.get("/api/v1/cases", headers=auth(agent, **acting("nonsense"))), 403, "mandate_unknown"
    )


async def test_expiry_and_revocation_take_effect_on_the_next_request_on_every_instance(
    scene: Scene,
    make_client: Any,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    relay: Relay,
    db: asyncpg.Connection,
) -> None:
    client, principal, agent = scene.client, scene.principal, scene.agent
    other = await payment_client(make_client, sandbox_url, relay)  # a second replica, same database
    mandate = await grant(client, principal, agent, ["read_cases"])
    for replica in (client, other):
        answer = await replica.get("/api/v1/cases", headers=auth(agent, **acting(mandate["id"])))
        assert answer.status_code == 200, answer.text

    # Expiry: time passes (the row's end moved into the past, as a clock would).
    await db.execute(
        "UPDATE bff.mandates SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", mandate["id"]
    )
    for replica in (client, other):
        await problem(
            await replica.get("/api/v1/cases", headers=auth(agent, **acting(mandate["id"]))),
            403,
            "mandate_expired",
        )
    listed = (await client.get(MANDATES, headers=auth(principal))).json()
    assert [(m["id"], m["status"]) for m in listed["granted"]] == [(mandate["id"], "expired")]

    # Revocation by the principal on one replica: the agent is refused on the other at once.
    fresh = await grant(client, principal, agent, ["read_cases"])
    assert (await other.get("/api/v1/cases", headers=auth(agent, **acting(fresh["id"])))).status_code == 200
    revoked = await client.post(f"{MANDATES}/{fresh['id']}/revoke", headers=auth(principal, key()))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert revoked.json()["revokedBy"] == "principal"
    for replica in (other, client):
        await problem(
            await replica.get("/api/v1/cases", headers=auth(agent, **acting(fresh["id"]))),
            403,
            "mandate_revoked",
        )
    # The agent can end one too; accepting an ended one is refused.
    third = await grant(client, principal, agent, ["book"])
    by_agent = await other.post(f"{MANDATES}/{third['id']}/revoke", headers=auth(agent, key()))
    assert by_agent.status_code == 200 and by_agent.json()["revokedBy"] == "agent"
    await problem(
        await client.post(f"{MANDATES}/{third['id']}/accept", headers=auth(agent, key())),
        409,
        "mandate_not_offered",
    )
    held = (await other.get(MANDATES, headers=auth(agent))).json()
    assert {m["id"]: m["status"] for m in held["held"]} == {
        mandate["id"]: "expired",
        fresh["id"]: "revoked",
        third["id"]: "revoked",
    }
    assert held["granted"] == []
    # A stranger can neither end nor use someone else's mandate.
    stranger = await login_resident(client, sandbox, channel="app", level=3)
    await problem(
        await client.post(f"{MANDATES}/{mandate['id']}/revoke", headers=auth(stranger, key())),
        404,
        "mandate_not_found",
    )
    assert (await client.get(MANDATES, headers=auth(stranger))).json() == {"granted": [], "held": []}


async def test_self_grant_chain_and_bad_input_are_refused_and_write_nothing(
    scene: Scene, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    client, principal, agent = scene.client, scene.principal, scene.agent

    async def snapshot() -> tuple[int, int]:
        return (
            int(await db.fetchval("SELECT count(*) FROM bff.mandates")),
            int(await db.fetchval("SELECT count(*) FROM bff.mandate_invites WHERE used_at IS NOT NULL")),
        )

    own = (await invite(client, principal)).json()["code"]
    code = (await invite(client, agent)).json()["code"]
    before = await snapshot()

    async def try_grant(who: dict[str, Any], body: dict[str, Any], status: int, problem_code: str) -> None:
        full = {"inviteCode": code, "actions": ["read_cases"], "expiresAt": expiry(), **body}
        await problem(await client.post(MANDATES, json=full, headers=auth(who, key())), status, problem_code)

    await try_grant(principal, {"inviteCode": own}, 422, "mandate_self_grant")
    await try_grant(principal, {"actions": ["read_cases", "sell_house"]}, 422, "mandate_action_unknown")
    await try_grant(principal, {"expiresAt": expiry(days=400)}, 422, "mandate_expiry_invalid")
    await try_grant(principal, {"expiresAt": expiry(days=-1)}, 422, "mandate_expiry_invalid")
    await try_grant(principal, {"inviteCode": "ZZZZZZZZ"}, 422, "mandate_invite_invalid")
    await try_grant(principal, {"actions": []}, 400, "validation_failed")
    await try_grant(principal, {"scope": "everything"}, 400, "validation_failed")
    low = await login_resident(client, sandbox, channel="miniprogram", level=2)
    await try_grant(low, {}, 403, "step_up_required")
    assert await snapshot() == before

    # A chain: the agent of a mandate cannot grant one in the principal's name.
    held = await grant(client, principal, agent, ["read_cases"])
    third = await login_resident(client, sandbox, channel="app", level=3)
    third_code = (await invite(client, third)).json()["code"]
    before = await snapshot()
    chained = await client.post(
        MANDATES,
        json={"inviteCode": third_code, "actions": ["read_cases"], "expiresAt": expiry()},
        headers=auth(agent, key(), **acting(held["id"])),
    )
    await problem(chained, 403, "mandate_chain")
    assert await snapshot() == before
    # The code the refused requests named is still good: nothing consumed it.
    fine = await client.post(
        MANDATES,
        json={"inviteCode": code, "actions": ["read_cases"], "expiresAt": expiry(days=365)},
        headers=auth(principal, key()),
    )
    assert fine.status_code == 201, fine.text
    again = await client.post(
        MANDATES,
        json={"inviteCode": code, "actions": ["read_cases"], "expiresAt": expiry()},
        headers=auth(principal, key()),
    )
    await problem(again, 422, "mandate_invite_invalid")  # one-time


async def test_a_guardian_mandate_cannot_be_used_before_its_proof(
    scene: Scene, db: asyncpg.Connection
) -> None:
    client, principal, agent = scene.client, scene.principal, scene.agent
    mandate = await grant(client, principal, agent, ["read_cases"], kind="guardian")
    assert mandate["status"] == "pending_proof" and mandate["kind"] == "guardian"
    await problem(
        await client.get("/api/v1/cases", headers=auth(agent, **acting(mandate["id"]))),
        403,
        "mandate_pending_proof",
    )
    # Residents cannot prove it themselves; an operator records what they checked.
    body = {"proofKind": "birth_certificate", "reference": "P430104-2019-0001"}
    refused = await client.post(
        f"/api/v1/staff/mandates/{mandate['id']}/proof", json=body, headers=auth(agent, key())
    )
    await problem(refused, 403, "staff_only")
    proven = await client.post(
        f"/api/v1/staff/mandates/{mandate['id']}/proof",
        json=body,
        headers={**staff_headers(client), "Idempotency-Key": key()},
    )
    assert proven.status_code == 200, proven.text
    assert proven.json()["status"] == "active" and proven.json()["proofKind"] == "birth_certificate"
    assert (
        await client.get("/api/v1/cases", headers=auth(agent, **acting(mandate["id"])))
    ).status_code == 200
    again = await client.post(
        f"/api/v1/staff/mandates/{mandate['id']}/proof",
        json=body,
        headers={**staff_headers(client), "Idempotency-Key": key()},
    )
    await problem(again, 409, "mandate_no_proof_needed")
    # A family mandate needs no proof: it is active once accepted.
    family = await grant(client, principal, agent, ["read_cases"])
    assert family["status"] == "active"
    assert await db.fetchval("SELECT proof_ref FROM bff.mandates WHERE id = $1::uuid", mandate["id"]) == (
        "birth_certificate:P430104-2019-0001"
    )


async def test_the_principal_is_told_and_sees_the_agent_in_who_used_my_data(
    scene: Scene, db: asyncpg.Connection
) -> None:
    client, principal, agent = scene.client, scene.principal, scene.agent
    mandate = await grant(client, principal, agent, ["read_cases"])
    for _ in range(3):  # three reads on one day: one message
        answer = await client.get("/api/v1/cases", headers=auth(agent, **acting(mandate["id"])))
        assert answer.status_code == 200, answer.text
    revoked = await client.post(f"{MANDATES}/{mandate['id']}/revoke", headers=auth(agent, key()))
    assert revoked.status_code == 200
    await client.post(f"{MANDATES}/{mandate['id']}/revoke", headers=auth(principal, key()))  # again: no news
    rows = await db.fetch(
        "SELECT person_id, payload FROM bff.outbox WHERE topic = 'mandate.changed' ORDER BY id"
    )
    told = [(r["person_id"], json.loads(r["payload"])) for r in rows]
    mine = [(person, body) for person, body in told if body["mandateId"] == mandate["id"]]
    assert [(person, body["event"], body["action"]) for person, body in mine] == [
        (principal["person_id"], "accepted", None),
        (principal["person_id"], "used", "read_cases"),
        (principal["person_id"], "revoked", None),
    ]
    assert "*" in mine[0][1]["agentName"]  # masked
    used = await client.get("/api/v1/me/data-access", headers=auth(principal))
    assert used.status_code == 200, used.text
    by_agent = [i for i in used.json()["items"] if i["actor"] == "agent"]
    assert len(by_agent) >= 3 and {i["agent"] for i in by_agent} == {agent["person_id"]}
    assert {i["action"] for i in by_agent} >= {"acting.read_cases"}
    assert all(i["channel"] == "app" for i in by_agent)


async def test_one_invite_code_makes_one_mandate_however_many_grant_it_at_once(
    scene: Scene, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    client, agent = scene.client, scene.agent
    principals = [scene.principal] + [
        await login_resident(client, sandbox, channel="app", level=3) for _ in range(3)
    ]
    code = (await invite(client, agent)).json()["code"]
    body = {"inviteCode": code, "actions": ["book"], "expiresAt": expiry()}
    answers = await asyncio.gather(
        *(client.post(MANDATES, json=body, headers=auth(p, key())) for p in principals for _ in range(2))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [422] * 7, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 422} == {"mandate_invite_invalid"}
    assert await db.fetchval("SELECT count(*) FROM bff.mandates WHERE agent_id = $1", agent["person_id"]) == 1


async def test_item_categories_narrow_every_action_of_an_agent(
    scene: Scene, services: Any, sandbox_url: str, db: asyncpg.Connection
) -> None:
    client, principal, agent = scene.client, scene.principal, scene.agent
    await ensure_mirror(services, sandbox_url)
    catalogue = client.app.state.root.catalogue  # type: ignore[attr-defined]
    await client.app.state.root.catalogue_mirror.refresh(force=True)  # type: ignore[attr-defined]
    topics = [t.name for t in catalogue.topics(None, 100, None).items]

    def topic_of(code: str) -> str:
        return next(t for t in topics if code in catalogue.codes_under((t,)))

    case_item = await db.fetchval("SELECT item_code FROM bff.cases WHERE id = $1::uuid", scene.case_id)
    items = {scene.item["code"], case_item}
    theirs = sorted({topic_of(code) for code in items})
    other = next(t for t in topics if t not in theirs)
    assert not items & set(catalogue.codes_under((other,)))

    async def granted(categories: list[str]) -> httpx.Response:
        code = (await invite(client, agent)).json()["code"]
        return await client.post(
            MANDATES,
            json={
                "inviteCode": code,
                "actions": list(ACTIONS),
                "expiresAt": expiry(),
                "categories": categories,
            },
            headers=auth(principal, key()),
        )

    async def accepted(categories: list[str]) -> str:
        made = (await granted(categories)).json()
        assert made["categories"] == categories
        answer = await client.post(f"{MANDATES}/{made['id']}/accept", headers=auth(agent, key()))
        assert answer.status_code == 200, answer.text
        return str(made["id"])

    await problem(await granted(["没有这个主题"]), 422, "mandate_category_unknown")
    routes = scene.routes()
    lists = {"list_cases", "list_appointments"}

    # Within the topics of the principal's case and bookable item: every route answers.
    here = await accepted(theirs)
    for action in ACTIONS:
        for call in routes[action]:
            answer = await call(acting(here))
            assert answer.status_code in (200, 201), (call.__name__, answer.text)
            if call.__name__ in ("book", "pay"):
                scene.made["appointment" if action == "book" else "payment"] = answer.json()["id"]
            if call.__name__ in lists:
                assert answer.json()["items"], call.__name__

    # Under another topic: nothing of those items is read, made or paid, and lists show none.
    elsewhere = await accepted([other])
    before = await counts(db, principal["person_id"])
    for action in ACTIONS:
        for call in routes[action]:
            answer = await call(acting(elsewhere))
            if call.__name__ in lists:
                assert answer.status_code == 200 and answer.json()["items"] == [], answer.text
                continue
            await problem(answer, 403, "mandate_out_of_scope")
            assert answer.json()["categories"] == [other]
            assert answer.json()["itemCode"] in items, (call.__name__, answer.text)
    assert await counts(db, principal["person_id"]) == before
