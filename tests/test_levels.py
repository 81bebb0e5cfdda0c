"""Issue 9 §3: the real-name level every route demands, enumerated from the app, tested as a matrix.

The README's "Real-name levels" table is the decision; this test reads it and proves the app
agrees row by row (a new route without a row fails), then calls every route with a session one
level too low (403 `step_up_required`, with the level wanted and the step-up to do) and with one
at the level (never `step_up_required`).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from litestar.handlers import HTTPRouteHandler

from auth.guards import require_principal_if_declared, required_level, staff_only

README = Path(__file__).resolve().parents[1] / "README.md"
_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE|\*) (/\S+)` \| (none|L1|L2|L3|staff) \|")


def documented() -> dict[tuple[str, str], str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Real-name levels", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            rows[(match.group(1), match.group(2))] = match.group(3)
    return rows


def row_for(table: dict[tuple[str, str], str], method: str, path: str) -> str | None:
    """The route's own row, else the longest `* <prefix>/*` row above it (a group's level, so a
    route added to an existing group needs no row of its own unless it differs)."""
    if (method, path) in table:
        return table[(method, path)]
    groups = [(p[:-1], level) for (m, p), level in table.items() if m == "*" and p.endswith("/*")]
    matching = [(prefix, level) for prefix, level in groups if path.startswith(prefix)]
    return max(matching, key=lambda pl: len(pl[0]))[1] if matching else None


def demanded(app: Any) -> dict[tuple[str, str], str]:
    found = {}
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            guards = [g for g in handler.resolve_guards() if g is not require_principal_if_declared]
            takes_principal = "principal" in handler.parsed_fn_signature.parameters
            for method in handler.http_methods:
                if method in {"HEAD", "OPTIONS"}:
                    continue
                if staff_only in guards:
                    level = "staff"
                elif not takes_principal and not any(hasattr(g, "required_level") for g in guards):
                    level = "none"
                else:
                    level = f"L{required_level(guards)}"
                found[(method, route.path)] = level
    return found


def token(client: httpx.AsyncClient, level: int) -> dict[str, str]:
    issued = client.app.state.auth.tokens.issue(  # type: ignore[attr-defined]
        subject=str(uuid.uuid4()), session_id=uuid.uuid4().hex, channel="app", level=level
    )
    return {"Authorization": f"Bearer {issued.token}"}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


async def test_the_readme_table_is_what_the_app_demands(client) -> None:
    table, app = documented(), demanded(client.app)  # type: ignore[attr-defined]
    assert len(app) >= 30
    missing = sorted(k for k in app if row_for(table, *k) is None)
    assert not missing, f"routes without a row in README 'Real-name levels': {missing}"
    stale = sorted(k for k in table if k[0] != "*" and k not in app)
    assert not stale, f"README rows for routes that do not exist: {stale}"
    differ = {k: (row_for(table, *k), app[k]) for k in app if row_for(table, *k) != app[k]}
    assert not differ, f"README level != app level (README, app): {differ}"
    # The decisions of issue 9: booking L2, applying and reading cases L3, guides open.
    assert app[("POST", "/api/v1/appointments/holds")] == "L2"
    assert app[("POST", "/api/v1/appointments")] == "L2"
    assert app[("POST", "/api/v1/cases")] == "L3"
    assert app[("GET", "/api/v1/cases/{case_id:str}")] == "L3"
    assert app[("POST", "/api/v1/uploads")] == "L3"
    assert app[("GET", "/api/v1/items/{code:str}")] == "none"
    assert app[("GET", "/api/v1/items")] == "none"


async def test_every_route_refuses_a_session_one_level_too_low_and_admits_one_at_it(client) -> None:
    app = demanded(client.app)  # type: ignore[attr-defined]
    checked = 0
    for (method, path), level in sorted(app.items()):
        url = concrete(path)
        body = b"{}" if method in {"POST", "PUT", "PATCH"} else None
        headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
        if level in {"L2", "L3"}:
            need = int(level[1])
            low = await client.request(
                method, url, content=body, headers={**headers, **token(client, need - 1)}
            )
            assert low.status_code == 403, (method, path, low.status_code, low.text)
            problem = low.json()
            assert problem["code"] == "step_up_required", (method, path, problem)
            assert problem["requiredLevel"] == need and problem["currentLevel"] == need - 1
            assert problem["stepUp"]["method"] == "idp_reauthentication"
            checked += 1
        if level.startswith("L"):
            at = {**headers, **token(client, int(level[1]))}
            if path.endswith("/stream"):
                # A live stream never ends, and the in-process transport reads whole bodies: it is
                # admitted at its level over real HTTP in tests/test_push.py (SSE on another replica).
                continue
            ok = await client.request(method, url, content=body, headers=at)
            assert ok.status_code != 500, (method, path, ok.text)
            assert ok.status_code == 401 or ok.json().get("code") != "step_up_required", (method, path)
        if level == "none":
            anonymous = await client.request(method, url, content=body, headers=headers)
            # Never "sign in first" (a device signature or a webhook signature is another matter).
            assert anonymous.status_code != 500, (method, path, anonymous.text)
            assert anonymous.json().get("code") != "unauthorized" if anonymous.status_code >= 400 else True
    assert checked >= 12
