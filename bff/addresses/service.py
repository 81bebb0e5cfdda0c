"""The resident's mailing addresses: encrypted at rest, masked when shown, every read audited.

Name, phone and street are encrypted with the process's `PiiCrypto` (the field name is bound in,
so a value copied into another column does not decrypt). The region code is checked against the
catalogue's regions before anything is written, and a person keeps at most `max_per_person`
addresses (counted under a per-person lock, so concurrent adds cannot pass the cap).
"""

from __future__ import annotations

import uuid
from datetime import UTC

import asyncpg

from adapters.courier.schemas import Recipient
from adapters.errors import ProblemError
from adapters.pii import mask_address, mask_name, mask_phone
from auth import audit
from auth.crypto import PiiCrypto
from auth.principal import Principal
from bff.addresses.schemas import AddressIn, AddressOut, AddressPage
from bff.catalogue.service import CatalogueService
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid


class AddressService:
    def __init__(
        self, pool: asyncpg.Pool, crypto: PiiCrypto, catalogue: CatalogueService, *, max_per_person: int
    ) -> None:
        self.pool = pool
        self.crypto = crypto
        self.catalogue = catalogue
        self.max_per_person = max_per_person

    def _out(self, row: asyncpg.Record) -> AddressOut:
        return AddressOut(
            id=str(row["id"]),
            name=mask_name(self.crypto.decrypt("name", row["name_enc"])),
            phone=mask_phone(self.crypto.decrypt("phone", row["phone_enc"])),
            address=mask_address(self.crypto.decrypt("address", row["address_enc"])),
            region_code=row["region_code"],
            label=row["label"],
            created_at=row["created_at"].astimezone(UTC).isoformat(),
            updated_at=row["updated_at"].astimezone(UTC).isoformat(),
        )

    def _check_region(self, data: AddressIn) -> None:
        if not self.catalogue.is_region(data.region_code):
            raise ProblemError(
                f"regionCode: {data.region_code} is not a region of Hunan; see /api/v1/regions",
                status=422,
                code="region_unknown",
                extra={"field": "regionCode"},
                detail_zh=f"regionCode：{data.region_code} 不是湖南省的行政区划，见 /api/v1/regions",
            )

    async def _audit(self, conn: object, principal: Principal, action: str, obj: str) -> None:
        await audit.record(
            conn,
            subject=principal.person_id,
            action=action,
            object=obj,
            result="ok",
            channel=principal.channel,
        )

    async def _own(self, principal: Principal, address_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.addresses WHERE id = $1 AND deleted_at IS NULL",
            parse_uuid(address_id, "address"),
        )
        return await owned(self.pool, principal, "address", address_id, row)

    # --- the resident's routes ---

    async def mine(self, principal: Principal) -> AddressPage:
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.addresses WHERE person_id = $1 AND deleted_at IS NULL
            ORDER BY created_at, id LIMIT $2
            """,
            principal.person_id,
            self.max_per_person,
        )
        await self._audit(self.pool, principal, "address.read", f"addresses:{len(rows)}")
        return AddressPage(items=[self._out(r) for r in rows], next_cursor=None)

    async def create(self, ctx: IdemContext, principal: Principal, data: AddressIn) -> Recorded[AddressOut]:
        self._check_region(data)
        address_id = ctx.derive("address")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('addresses:' || $1))", principal.person_id
            )
            row = await conn.fetchrow("SELECT * FROM bff.addresses WHERE id = $1", address_id)
            if row is None:
                kept = await conn.fetchval(
                    "SELECT count(*) FROM bff.addresses WHERE person_id = $1 AND deleted_at IS NULL",
                    principal.person_id,
                )
                if kept >= self.max_per_person:
                    raise ProblemError(
                        f"you keep {kept} addresses, the most allowed; delete one first",
                        status=409,
                        code="address_limit_reached",
                        detail_zh=f"最多保存 {kept} 个地址，请先删除一个",
                    )
                row = await conn.fetchrow(
                    """
                    INSERT INTO bff.addresses (id, person_id, name_enc, phone_enc, address_enc, region_code, label)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
                    """,
                    address_id,
                    principal.person_id,
                    self.crypto.encrypt("name", data.name.strip()),
                    self.crypto.encrypt("phone", data.phone),
                    self.crypto.encrypt("address", data.address.strip()),
                    data.region_code,
                    data.label,
                )
                assert row is not None
                await self._audit(conn, principal, "address.create", f"address:{address_id}")
            return await ctx.finish(conn, self._out(row))

    async def replace(self, principal: Principal, address_id: str, data: AddressIn) -> AddressOut:
        """PUT: the address becomes exactly `data` (sending it twice leaves the same state)."""
        row = await self._own(principal, address_id)
        self._check_region(data)
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchrow(
                """
                UPDATE bff.addresses SET name_enc = $2, phone_enc = $3, address_enc = $4, region_code = $5,
                       label = $6, updated_at = now()
                 WHERE id = $1 AND deleted_at IS NULL RETURNING *
                """,
                row["id"],
                self.crypto.encrypt("name", data.name.strip()),
                self.crypto.encrypt("phone", data.phone),
                self.crypto.encrypt("address", data.address.strip()),
                data.region_code,
                data.label,
            )
            if updated is None:  # deleted meanwhile
                raise ProblemError(
                    f"no address {address_id}",
                    status=404,
                    code="address_not_found",
                    detail_zh=f"未找到地址 {address_id}",
                )
            await self._audit(conn, principal, "address.update", f"address:{row['id']}")
        return self._out(updated)

    async def remove(self, principal: Principal, address_id: str) -> None:
        """DELETE: gone from the list and from use; deleting it again is the same success."""
        ident = parse_uuid(address_id, "address")
        row = await self.pool.fetchrow("SELECT * FROM bff.addresses WHERE id = $1", ident)
        row = await owned(self.pool, principal, "address", address_id, row)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE bff.addresses SET deleted_at = coalesce(deleted_at, now()) WHERE id = $1", ident
            )
            await self._audit(conn, principal, "address.delete", f"address:{ident}")

    # --- read port for the delivery domain ---

    async def recipient(self, principal: Principal, address_id: str) -> tuple[uuid.UUID, Recipient]:
        """One of the caller's addresses in full, to send to the courier (the use is audited)."""
        row = await self._own(principal, address_id)
        await self._audit(self.pool, principal, "address.use", f"address:{row['id']}")
        return row["id"], Recipient(
            name=self.crypto.decrypt("name", row["name_enc"]),
            phone=self.crypto.decrypt("phone", row["phone_enc"]),
            address=self.crypto.decrypt("address", row["address_enc"]),
            region_code=row["region_code"],
        )
