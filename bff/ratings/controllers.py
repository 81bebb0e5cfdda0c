"""Routes of 好差评: rate a concluded case once; read my rating and its follow-up."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from auth.guards import APPLYING_LEVEL, residents_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.ratings.schemas import RatingIn, RatingOut
from bff.ratings.service import RatingService


class RatingController(Controller):
    tags = ["ratings"]
    guards = [residents_only, APPLYING_LEVEL]

    @post("/cases/{case_id:str}/rating", summary="好差评: rate a concluded case once", status_code=201)
    async def rate(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        ratings: NamedDependency[RatingService],
        idempotency_key: IdempotencyKey,
        case_id: FromPath[str],
        data: Annotated[RatingIn, Body()],
    ) -> Response[RatingOut]:
        case = await ratings.own_case(principal, case_id)
        return await idempotency.run(request, principal.person_id, lambda ctx: ratings.rate(ctx, case, data))

    @get("/ratings/{rating_id:str}", summary="My rating and, for a bad one, its follow-up")
    async def get_rating(
        self,
        principal: NamedDependency[Principal],
        ratings: NamedDependency[RatingService],
        rating_id: FromPath[str],
    ) -> RatingOut:
        return await ratings.get(principal, rating_id)
