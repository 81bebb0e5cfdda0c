"""Issue 9 §1: property-based tests of every operation of the OpenAPI document, over real HTTP.

A real `sanxiang serve` process (uvicorn, httptools) on a free port with the session's sandbox;
schemathesis loads `/schema/openapi.json` from it and, for every operation, sends examples that
fit the document and examples that do not (negative mode), authenticated as a level-3 resident.
Checks: no 5xx, the status code and content type are ones the document declares, the body
conforms to the declared schema. Examples are bounded (`EXAMPLES` per operation and mode) so the
module stays within about two minutes on the shared machine.

The booking and application flows also run statefully: schemathesis follows the document's OpenAPI
links (a booking's id to reading, cancelling and moving it; a hold's id to letting it go; a case's
id to reading it and answering its 补正) from answers it really got, with the same checks.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bff.app import create_app
from bff.platform.settings import Settings
from tests.auth_helpers import login_resident
from tests.conftest import (
    free_port,
    make_settings,
    record_exchange,
    start_process,
    stop_process,
    sync_once,
    wait_http,
)
from tests.test_journey_helpers import application, bookable_item, open_days, serve_env

EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Live:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token


class Starts:
    """A resident of its own (the per-operation examples may have logged the other one out) and
    real inputs for the operations that start a linked flow."""

    def __init__(self, token: str, slots: list[str], applications: list[dict[str, Any]]) -> None:
        self.token = token
        self.slots = slots
        self.applications = applications


async def _starts(url: str, services: Any, sandbox_url: str) -> Starts:
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox,
    ):
        who = await login_resident(client, sandbox, channel="app", level=3)
        db = await asyncpg.connect(services.database_url)
        try:
            item = await bookable_item(db)
        finally:
            await db.close()
        days = await open_days(client, who, item, 3)
        slots = [s["slotId"] for day in days for s in day["slots"]]
        applications = [await application(client, who, item) for _ in range(3)]
        return Starts(str(who["access_token"]), slots, applications)


@pytest.fixture(scope="module")
def live(services: Any, sandbox_url: str) -> Iterator[Live]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    asyncio.run(sync_once(make_settings(services, sandbox_url)))
    proc = start_process(
        [sys.executable, "-m", "bff.cli", "serve"], serve_env(services, sandbox_url, port), "bff-schemathesis"
    )
    try:
        wait_http(f"{url}/healthz", proc)

        async def token() -> str:
            async with (
                httpx.AsyncClient(base_url=url, timeout=30) as client,
                httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox,
            ):
                who = await login_resident(client, sandbox, channel="app", level=3)
                return str(who["access_token"])

        yield Live(url, asyncio.run(token()))
    finally:
        stop_process(proc)


def _document() -> dict[str, Any]:
    """The document the app serves, built from the app itself (no server needed to collect)."""
    app = create_app(
        Settings(env="test", database_url="postgresql://unused/x", redis_url="redis://unused/0"),
        configure_logs=False,
    )
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


SCHEMA = schemathesis.openapi.from_dict(_document())
# The message stream is an endless SSE response a generated example cannot finish reading; the push
# tests drive it over real HTTP instead.
NEVER_ENDING = {"GET /api/v1/messages/stream"}
OPERATIONS = {
    op.label: op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
    if op.label not in NEVER_ENDING
}


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_every_operation_holds_its_contract(label: str, live: Live) -> None:
    """Positive and negative examples of one operation; every check on every response."""
    operation = OPERATIONS[label]
    headers = {"Authorization": f"Bearer {live.token}"}
    seen: list[int] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=15)
            seen.append(response.status_code)
            # Into the suite-wide scans (tests/conftest.py): headers, no-store, nothing echoed.
            record_exchange(
                case.method,
                str(response.request.url),
                response.request.body if isinstance(response.request.body, bytes) else b"",
                True,
                response.status_code,
                {name: values[-1] for name, values in response.headers.items()},
                response.content,
            )

        try:
            run()
        except Unsatisfiable:
            # Nothing to get wrong (no parameters, no body): there is no negative example.
            assert mode is GenerationMode.NEGATIVE, label
    assert seen, f"{label}: no request was sent"
    assert not [s for s in seen if s >= 500 and s != 503], seen


# The operations of the linked flows (the links themselves are checked by the contract test).
FLOWS = SCHEMA.include(
    path_regex=r"^/api/v1/(appointments|cases)(/\{[a-z_]+\}|/holds(/\{hold_id\})?)?(/cancel|/reschedule|/supplements)?$"
)
STARTS = {"POST /api/v1/appointments", "POST /api/v1/appointments/holds", "POST /api/v1/cases"}
STEPS = 6
SCENARIOS = 10


def test_linked_flows_hold_their_contract(live: Live, services: Any, sandbox_url: str) -> None:
    """Stateful: each scenario is a few steps that follow the document's links from real answers.
    Every other start (hold, booking, application) is given a real slot or a valid application, so
    that its answer is a 201 whose links are followed; the rest are what schemathesis generates."""
    starts = asyncio.run(_starts(live.url, services, sandbox_url))
    headers = {"Authorization": f"Bearer {starts.token}"}
    slots = itertools.cycle(starts.slots)
    applications = itertools.cycle(starts.applications)
    turn = itertools.count()
    followed: list[str] = []

    class Flows(FLOWS.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # As the resident, each change under a fresh valid key: the flows are what is tested
            # here; generated headers are the per-operation test's business.
            case.headers = {**(case.headers or {}), **headers}
            if case.method != "GET":
                case.headers["Idempotency-Key"] = uuid.uuid4().hex
            if case.operation.label in STARTS and next(turn) % 2 == 0:
                if case.operation.label == "POST /api/v1/cases":
                    case.body = dict(next(applications))
                else:
                    case.body = {"slotId": next(slots)}

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live.url, "headers": headers, "timeout": 15}

        def after_call(self, response: Any, case: Any) -> None:
            followed.append(f"{case.operation.label} {response.status_code}")
            record_exchange(
                case.method,
                str(response.request.url),
                response.request.body if isinstance(response.request.body, bytes) else b"",
                True,
                response.status_code,
                {name: values[-1] for name, values in response.headers.items()},
                response.content,
            )

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, headers=headers)

    Flows.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # Links were really followed: something was read, cancelled or let go after it was made.
    # Only a link can give a step a real id: a 2xx on an operation with a path parameter is one.
    assert any("/{" in f and f.endswith((" 200", " 201")) for f in followed), followed
    assert not [f for f in followed if f.endswith((" 500", " 502"))], followed


def test_an_overlong_url_over_real_http_is_a_problem(live: Live) -> None:
    """The server itself must not answer first with its own plain-text page."""
    host, port = live.url.removeprefix("http://").split(":")
    for size in (9_000, 70_000, 200_000):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("GET", "/api/v1/items?q=" + "a" * size)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 414, (size, response.status, body[:200])
        assert response.getheader("content-type", "").startswith("application/problem+json"), body[:200]


def test_no_server_banner_and_security_headers_over_real_http(live: Live) -> None:
    response = httpx.get(f"{live.url}/healthz", timeout=10)
    assert "server" not in response.headers, response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert response.headers["referrer-policy"] == "no-referrer"
