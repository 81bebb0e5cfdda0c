"""Operations endpoints (outside /api): liveness, readiness, metrics."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from bff.ops.health import Health
from bff.platform.problems import PROBLEM_MEDIA_TYPE, render
from bff.platform.responses import encoded


@get("/healthz", include_in_schema=True, tags=["ops"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["ops"], summary="PostgreSQL and Redis reachable; upstream breaker states")
async def readyz(
    request: Request[Any, Any, Any], health: NamedDependency[Health]
) -> Response[dict[str, Any]]:
    ready, checks = await health.readiness()
    if ready:
        return Response({"status": "ready", "checks": checks})
    draining = bool(checks["draining"])
    problem = render(
        503,
        "draining" if draining else "not_ready",
        "shutting down: send new requests elsewhere" if draining else "PostgreSQL or Redis does not answer",
        accept_language=request.headers.get("accept-language", ""),
        instance=request.url.path,
    )
    # Probes and operators read `checks` at the top level of the problem (an RFC 9457 extension).
    body = msgspec.json.encode({**msgspec.json.decode(problem), "checks": checks})
    return encoded(body, dict[str, Any], status=503, media_type=PROBLEM_MEDIA_TYPE)


@get("/metrics", tags=["ops"], summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
