"""Routes of 代办 mandates: the agent's invite, the principal's grant (L3), both lists, accepting,
ending, and an operator's proof of a guardianship. None of them honours X-Acting-For: an agent
passing a mandate on (or managing one for their principal) is a `mandate_chain` refusal."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from auth.acting import OPT_REFUSAL
from auth.guards import APPLYING_LEVEL, BOOKING_LEVEL, residents_only, staff_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.mandates.schemas import InviteOut, MandateIn, MandateLists, MandateOut, ProofIn
from bff.mandates.service import MandateService


class MandateController(Controller):
    path = "/me/mandates"
    tags = ["mandates"]
    guards = [residents_only]
    opt = {OPT_REFUSAL: "mandate_chain"}
    cache_control = CacheControlHeader(no_store=True)

    @get("", summary="Mandates I granted (as principal) and those I hold (as agent)")
    async def list_mandates(
        self, principal: NamedDependency[Principal], mandates: NamedDependency[MandateService]
    ) -> MandateLists:
        return await mandates.lists(principal)

    @post(
        "/invites",
        summary="As the future agent: a one-time code (24 h) to give the resident who will grant the mandate",
        status_code=201,
        guards=[BOOKING_LEVEL],
    )
    async def invite(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        mandates: NamedDependency[MandateService],
        idempotency_key: IdempotencyKey,
    ) -> Response[InviteOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: mandates.invite(ctx, principal)
        )

    @post(
        "",
        summary="Grant a mandate to the resident whose invite code this is (L3; scope and expiry)",
        status_code=201,
        guards=[APPLYING_LEVEL],
    )
    async def grant(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        mandates: NamedDependency[MandateService],
        idempotency_key: IdempotencyKey,
        data: Annotated[MandateIn, Body()],
    ) -> Response[MandateOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: mandates.grant(ctx, principal, data)
        )

    @post("/{mandate_id:str}/accept", summary="As the agent: accept a mandate granted to me", status_code=200)
    async def accept(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        mandates: NamedDependency[MandateService],
        idempotency_key: IdempotencyKey,
        mandate_id: FromPath[str],
    ) -> Response[MandateOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: mandates.accept(ctx, principal, mandate_id)
        )

    @post(
        "/{mandate_id:str}/revoke",
        summary="End a mandate, as its principal or its agent (effective on the next request)",
        status_code=200,
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        mandates: NamedDependency[MandateService],
        idempotency_key: IdempotencyKey,
        mandate_id: FromPath[str],
    ) -> Response[MandateOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: mandates.revoke(ctx, principal, mandate_id)
        )


class MandateProofController(Controller):
    path = "/staff/mandates"
    tags = ["mandates"]
    guards = [staff_only]
    cache_control = CacheControlHeader(no_store=True)

    @post(
        "/{mandate_id:str}/proof",
        summary="Staff: the guardianship of a guardian mandate is proven (birth certificate or household register)",
        status_code=200,
    )
    async def prove(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        mandates: NamedDependency[MandateService],
        idempotency_key: IdempotencyKey,
        mandate_id: FromPath[str],
        data: Annotated[ProofIn, Body()],
    ) -> Response[MandateOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: mandates.prove(ctx, principal, mandate_id, data)
        )
