"""The control API tests and demos use to steer the sandbox."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, delete, get, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from sandbox.faults import FaultSpec, FaultTable


@put("/faults/{upstream:str}")
async def set_fault(
    faults: NamedDependency[FaultTable], upstream: FromPath[str], data: Annotated[FaultSpec, Body()]
) -> FaultSpec:
    faults.specs[upstream] = data
    return data


@delete("/faults/{upstream:str}")
async def clear_fault(faults: NamedDependency[FaultTable], upstream: FromPath[str]) -> None:
    faults.reset(upstream)


@delete("/faults")
async def clear_all(faults: NamedDependency[FaultTable]) -> None:
    faults.reset()


@get("/requests/{upstream:str}")
async def request_count(faults: NamedDependency[FaultTable], upstream: FromPath[str]) -> dict[str, int]:
    """How many requests reached this upstream (to prove a breaker sent none)."""
    return {"count": faults.requests.get(upstream, 0)}


router = Router(path="/_control", route_handlers=[set_fault, clear_fault, clear_all, request_count])
