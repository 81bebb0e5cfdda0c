"""Routes of my mailing addresses: list, add (Idempotency-Key), replace, delete."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from auth.guards import residents_only
from auth.principal import Principal
from bff.addresses.schemas import AddressIn, AddressOut, AddressPage
from bff.addresses.service import AddressService
from bff.idempotency import IdempotencyKey, IdempotencyStore, OptionalIdempotencyKey


class AddressController(Controller):
    path = "/me/addresses"
    tags = ["addresses"]
    guards = [residents_only]
    # Personal data (masked, still personal): never kept by a cache on the way.
    cache_control = CacheControlHeader(no_store=True)

    @get("", summary="My mailing addresses (name, phone and street masked)")
    async def list_addresses(
        self, principal: NamedDependency[Principal], addresses: NamedDependency[AddressService]
    ) -> AddressPage:
        return await addresses.mine(principal)

    @post("", summary="Add a mailing address", status_code=201)
    async def add(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        addresses: NamedDependency[AddressService],
        idempotency_key: IdempotencyKey,
        data: Annotated[AddressIn, Body()],
    ) -> Response[AddressOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: addresses.create(ctx, principal, data)
        )

    @put("/{address_id:str}", summary="Replace one of my addresses (idempotent by itself)")
    async def replace(
        self,
        principal: NamedDependency[Principal],
        addresses: NamedDependency[AddressService],
        address_id: FromPath[str],
        data: Annotated[AddressIn, Body()],
        idempotency_key: OptionalIdempotencyKey = None,
    ) -> AddressOut:
        return await addresses.replace(principal, address_id, data)

    @delete("/{address_id:str}", summary="Delete one of my addresses (idempotent by itself)", status_code=204)
    async def remove(
        self,
        principal: NamedDependency[Principal],
        addresses: NamedDependency[AddressService],
        address_id: FromPath[str],
        idempotency_key: OptionalIdempotencyKey = None,
    ) -> None:
        await addresses.remove(principal, address_id)
