"""Mailing a concluded case's result to one of my addresses, and tracking the parcel.

`request` is re-entrant under the idempotency key: our shipment row goes in first (status
`requesting`, the recipient copied encrypted), then the courier is asked with our stable request id
(it de-duplicates, so a re-run gets the same waybill), then the waybill, the case's `delivering`
state, the outbox message and the recorded answer are written in one transaction.

Every tracking event — the signed callback, the change-feed reconciler, the tracking query right
after creation — ends in `apply_event`: keyed by the courier's event id (a second delivery changes
nothing), the status follows the highest courier seq (a late, older event joins the list without
rolling the status back), the case's state and the outbox follow in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg
import asyncpg.pool
import msgspec

from adapters.courier import callback
from adapters.courier.client import CourierClient, CourierRefused
from adapters.courier.schemas import CourierEvent, Recipient, Sender
from adapters.errors import ProblemError
from adapters.pii import mask_address, mask_name, mask_phone
from auth import audit
from auth.crypto import PiiCrypto
from auth.principal import Principal
from bff.addresses.service import AddressService
from bff.cases.service import CaseService, DeliveryState, TimelineStep
from bff.catalogue.service import CatalogueService
from bff.delivery.schemas import DeliveryIn, DeliveryOut, RecipientOut, TrackingEventOut
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.platform.logs import get_logger
from push import outbox
from push.topics import DeliveryChanged

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

log = get_logger("bff.delivery")

FEED_CURSOR = "courier.changes"
# Results that are a document to mail (DOMAIN.md: 0 出证办结, 6 办结).
MAILABLE_RESULTS = frozenset({"issued", "done"})
STATUS_EN = {
    "created": "Shipment created",
    "picked_up": "Picked up",
    "in_transit": "In transit",
    "out_for_delivery": "Out for delivery",
    "delivered": "Delivered",
    "failed": "Delivery attempt failed",
    "returned": "Returned to the hall",
}


def _case_state(status: str) -> DeliveryState:
    if status == "delivered":
        return "delivered"
    if status == "returned":
        return "concluded"  # back at the hall: to collect, or to mail again
    return "delivering"


class ParcelRef(msgspec.Struct, frozen=True, kw_only=True):
    """A parcel on its way to the resident (home's read port)."""

    id: str
    case_id: str
    project_no: str | None
    item_name: str
    carrier: str
    waybill_no: str | None
    status: str
    hall_name: str
    updated_at: datetime


class DeliveryService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        courier: CourierClient,
        cases: CaseService,
        catalogue: CatalogueService,
        addresses: AddressService,
        crypto: PiiCrypto,
        *,
        notify_url: str,
        webhook_secret: str,
        webhook_window_s: int,
        feed_lookback: int,
    ) -> None:
        self.pool = pool
        self.courier = courier
        self.cases = cases
        self.catalogue = catalogue
        self.addresses = addresses
        self.crypto = crypto
        self.notify_url = notify_url or None
        self.webhook_secret = webhook_secret
        self.webhook_window_s = webhook_window_s
        self.feed_lookback = feed_lookback

    # --- asking for the result to be mailed ---

    async def request(
        self, ctx: IdemContext, principal: Principal, case_id: str, data: DeliveryIn
    ) -> Recorded[DeliveryOut]:
        case = await self.cases.own(principal, case_id)
        shipment_id = ctx.derive("shipment")
        row = await self.pool.fetchrow("SELECT * FROM bff.shipments WHERE id = $1", shipment_id)
        if row is None:
            row = await self._open(ctx, principal, case, shipment_id, data)
        waybill = row["waybill_no"] or await self._create_at_courier(row, case["project_no"])
        events = await self._tracking(waybill)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._fill(conn, row, waybill, events)
            return await ctx.finish(conn, await self._out(conn, shipment_id))

    async def _create_at_courier(self, row: asyncpg.Record, project_no: str) -> str:
        """The courier's waybill for our shipment row, asked with the row's stable request id."""
        recipient = Recipient(
            name=self.crypto.decrypt("name", row["recipient_name_enc"]),
            phone=self.crypto.decrypt("phone", row["recipient_phone_enc"]),
            address=self.crypto.decrypt("address", row["recipient_address_enc"]),
            region_code=row["region_code"],
        )
        try:
            created = await self.courier.create(
                request_id=str(row["request_id"]),
                project_no=project_no,
                sender=Sender(hall_id=row["hall_id"], hall_name=row["hall_name"]),
                recipient=recipient,
                notify_url=self.notify_url,
            )
        except CourierRefused as exc:
            # A refusal is the courier's final word: no shipment exists, ours goes too.
            await self.pool.execute(
                "DELETE FROM bff.shipments WHERE id = $1 AND waybill_no IS NULL", row["id"]
            )
            raise ProblemError(
                f"the courier refused: {exc.detail}",
                status=422,
                code="courier_refused",
                detail_zh=f"快递公司拒绝了寄递：{exc.detail}",
            ) from None
        return created.waybill_no

    async def _tracking(self, waybill: str) -> list[CourierEvent]:
        """Best effort: the tracking so far (the `created` event) right away; else callbacks bring it."""
        try:
            return (await self.courier.track(waybill)).events
        except ProblemError as exc:
            log.info("courier_tracking_deferred", code=exc.code)
            return []

    async def _fill(self, conn: Conn, row: asyncpg.Record, waybill: str, events: list[CourierEvent]) -> None:
        """Inside the caller's transaction: our row gets its waybill, the case is being delivered."""
        first = await conn.fetchval(
            """
            UPDATE bff.shipments SET waybill_no = $2,
                   status = CASE WHEN status = 'requesting' THEN 'created' ELSE status END, updated_at = now()
             WHERE id = $1 AND waybill_no IS NULL RETURNING 1
            """,
            row["id"],
            waybill,
        )
        if first:
            # The resident hears of it with the courier's `created` event (one message per change).
            await self.cases.mark_delivery(conn, row["case_id"], "delivering")
        for event in events:
            await self.apply_event(conn, event, "tracking")

    async def resolve_pending(self, *, older_than_s: float = 60.0, batch: int = 50) -> int:
        """The worker's job: shipments left `requesting` (the courier's answer lost, the API killed,
        the resident gone) are asked again with their own request id — the courier answers the
        shipment it made, or makes it now — so no row blocks its case for ever."""
        rows = await self.pool.fetch(
            """
            SELECT s.*, c.project_no FROM bff.shipments s JOIN bff.cases c ON c.id = s.case_id
            WHERE s.status = 'requesting' AND s.waybill_no IS NULL
              AND s.updated_at < now() - make_interval(secs => $1)
            ORDER BY s.created_at LIMIT $2
            """,
            older_than_s,
            batch,
        )
        settled = 0
        for row in rows:
            try:
                waybill = await self._create_at_courier(row, row["project_no"])
            except ProblemError as exc:
                log.info("shipment_still_pending", code=exc.code)
                continue
            events = await self._tracking(waybill)
            async with self.pool.acquire() as conn, conn.transaction():
                await self._fill(conn, row, waybill, events)
            settled += 1
        return settled

    async def _open(
        self,
        ctx: IdemContext,
        principal: Principal,
        case: asyncpg.Record,
        shipment_id: uuid.UUID,
        data: DeliveryIn,
    ) -> asyncpg.Record:
        """Check that this case's result can be mailed to that address; our shipment row, `requesting`."""
        if await self.pool.fetchval(
            "SELECT 1 FROM bff.shipments WHERE case_id = $1 AND status <> 'returned'", case["id"]
        ):
            raise ProblemError(
                "the result of this case is already being mailed",
                status=409,
                code="delivery_already_requested",
                detail_zh="该办件的结果已在寄递中",
            )
        if case["status"] != "concluded" or case["result_code"] not in MAILABLE_RESULTS:
            raise ProblemError(
                "only a concluded case with an issued result can be mailed",
                status=409,
                code="no_result_to_mail",
                detail_zh="只有已办结且出证的办件才能寄递",
            )
        guide = await self.catalogue.guide(case["item_code"], case["region_code"])
        if not guide.channels.mailable:
            raise ProblemError(
                "results of this item are handed out at the hall",
                status=422,
                code="item_not_mailable",
                detail_zh="该事项的结果只能到大厅领取",
            )
        address_id, recipient = await self.addresses.recipient(principal, data.address_id)
        hall = guide.halls[0] if guide.halls else None
        try:
            row = await self.pool.fetchrow(
                """
                INSERT INTO bff.shipments (id, case_id, person_id, request_id, address_id, recipient_name_enc,
                                           recipient_phone_enc, recipient_address_enc, region_code, hall_id,
                                           hall_name, status)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'requesting')
                ON CONFLICT (id) DO NOTHING RETURNING *
                """,
                shipment_id,
                case["id"],
                principal.person_id,
                ctx.request_id,
                address_id,
                self.crypto.encrypt("name", recipient.name),
                self.crypto.encrypt("phone", recipient.phone),
                self.crypto.encrypt("address", recipient.address),
                recipient.region_code,
                hall.id if hall else case["region_code"],
                hall.name if hall else "政务服务中心",
            ) or await self.pool.fetchrow("SELECT * FROM bff.shipments WHERE id = $1", shipment_id)
        except asyncpg.UniqueViolationError:
            raise ProblemError(
                "the result of this case is already being mailed",
                status=409,
                code="delivery_already_requested",
                detail_zh="该办件的结果已在寄递中",
            ) from None
        assert row is not None
        return row

    # --- reading ---

    async def under_way(self, person_id: str, limit: int = 20) -> list[ParcelRef]:
        """Read port for home: the resident's parcels not yet in hand, the most recently moved first."""
        rows = await self.pool.fetch(
            """
            SELECT s.id, s.case_id, c.project_no, c.item_name, s.carrier, s.waybill_no, s.status,
                   s.hall_name, s.updated_at
            FROM bff.shipments s JOIN bff.cases c ON c.id = s.case_id
            WHERE s.person_id = $1 AND s.status IN ('requesting', 'created', 'picked_up', 'in_transit',
                                                     'out_for_delivery')
            ORDER BY s.updated_at DESC LIMIT $2
            """,
            person_id,
            limit,
        )
        return [
            ParcelRef(
                id=str(r["id"]),
                case_id=str(r["case_id"]),
                project_no=r["project_no"],
                item_name=r["item_name"],
                carrier=r["carrier"],
                waybill_no=r["waybill_no"],
                status=r["status"],
                hall_name=r["hall_name"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    async def view(self, principal: Principal, delivery_id: str) -> DeliveryOut:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.shipments WHERE id = $1", parse_uuid(delivery_id, "delivery")
        )
        row = await owned(self.pool, principal, "delivery", delivery_id, row)
        out = await self._out(self.pool, row["id"])
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action="delivery.read",
            object=f"delivery:{row['id']}",
            result="ok",
            channel=principal.channel,
        )
        return out

    async def _out(self, conn: Conn | asyncpg.Pool, shipment_id: uuid.UUID) -> DeliveryOut:
        row = await conn.fetchrow(
            "SELECT s.*, c.project_no FROM bff.shipments s JOIN bff.cases c ON c.id = s.case_id WHERE s.id = $1",
            shipment_id,
        )
        assert row is not None
        events = await conn.fetch(
            "SELECT * FROM bff.shipment_events WHERE shipment_id = $1 ORDER BY seq", shipment_id
        )
        return DeliveryOut(
            id=str(row["id"]),
            case_id=str(row["case_id"]),
            project_no=row["project_no"],
            carrier=row["carrier"],
            waybill_no=row["waybill_no"],
            status=row["status"],
            recipient=RecipientOut(
                name=mask_name(self.crypto.decrypt("name", row["recipient_name_enc"])),
                phone=mask_phone(self.crypto.decrypt("phone", row["recipient_phone_enc"])),
                address=mask_address(self.crypto.decrypt("address", row["recipient_address_enc"])),
                region_code=row["region_code"],
            ),
            hall_name=row["hall_name"],
            events=[
                TrackingEventOut(
                    seq=e["seq"],
                    at=e["occurred_at"].astimezone(UTC).isoformat(),
                    status=e["status"],
                    place=e["place"],
                    description=e["description"],
                )
                for e in events
            ],
            created_at=row["created_at"].astimezone(UTC).isoformat(),
            updated_at=row["updated_at"].astimezone(UTC).isoformat(),
        )

    async def timeline_of(self, conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> list[TimelineStep]:
        """The case timeline's port: each shipment of the case, then each of its tracking events."""
        steps: list[TimelineStep] = []
        for shipment in await conn.fetch(
            "SELECT * FROM bff.shipments WHERE case_id = $1 AND waybill_no IS NOT NULL ORDER BY created_at",
            case_id,
        ):
            steps.append(
                TimelineStep(
                    at=shipment["created_at"],
                    kind="delivery_requested",
                    title_zh="申请邮寄办理结果",
                    title_en="Mailing of the result requested",
                    details={
                        "deliveryId": str(shipment["id"]),
                        "carrier": shipment["carrier"],
                        "waybillNo": shipment["waybill_no"],
                    },
                )
            )
            for event in await conn.fetch(
                "SELECT * FROM bff.shipment_events WHERE shipment_id = $1 ORDER BY seq", shipment["id"]
            ):
                steps.append(
                    TimelineStep(
                        at=event["occurred_at"],
                        kind="tracking",
                        title_zh=event["description"],
                        title_en=STATUS_EN.get(event["status"], event["status"]),
                        details={
                            "deliveryId": str(shipment["id"]),
                            "status": event["status"],
                            "place": event["place"],
                            "waybillNo": shipment["waybill_no"],
                        },
                    )
                )
        return steps

    # --- the courier's events: callback, feed, tracking ---

    async def receive_callback(self, headers: Mapping[str, str], body: bytes) -> str:
        try:
            event = callback.verify(headers, body, secret=self.webhook_secret, window_s=self.webhook_window_s)
        except callback.CallbackRejected as exc:
            await audit.refused_callback(
                self.pool, sender="courier", event_id=headers.get(callback.EVENT_ID, "-"), detail=exc.detail
            )
            raise
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.apply_event(conn, event, "callback")

    async def apply_event(self, conn: Conn, event: CourierEvent, via: str) -> str:
        """Apply one event inside the caller's transaction: 'applied', 'duplicate' or 'unknown_shipment'."""
        row = await conn.fetchrow(
            """
            SELECT s.*, c.project_no, c.item_name FROM bff.shipments s JOIN bff.cases c ON c.id = s.case_id
            WHERE s.waybill_no = $1 FOR UPDATE OF s
            """,
            event.waybill_no,
        )
        if row is None and event.project_no:
            # Our answer from the courier was lost after it made the shipment: ours still waits.
            row = await conn.fetchrow(
                """
                SELECT s.*, c.project_no, c.item_name FROM bff.shipments s JOIN bff.cases c ON c.id = s.case_id
                WHERE c.project_no = $1 AND s.waybill_no IS NULL AND s.status = 'requesting'
                FOR UPDATE OF s
                """,
                event.project_no,
            )
            if row is not None:
                await conn.execute(
                    "UPDATE bff.shipments SET waybill_no = $2 WHERE id = $1", row["id"], event.waybill_no
                )
        if row is None:
            return "unknown_shipment"
        inserted = await conn.fetchval(
            """
            INSERT INTO bff.shipment_events (event_id, shipment_id, seq, status, occurred_at, place, description, via)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING RETURNING 1
            """,
            event.event_id,
            row["id"],
            event.seq,
            event.status,
            event.at,
            event.place,
            event.description,
            via,
        )
        if inserted is None:
            return "duplicate"
        advanced = await conn.fetchval(
            """
            UPDATE bff.shipments SET status = $2, version = $3, updated_at = now()
             WHERE id = $1 AND version < $3 RETURNING 1
            """,
            row["id"],
            event.status,
            event.seq,
        )
        if advanced:
            await self.cases.mark_delivery(conn, row["case_id"], _case_state(event.status))
            await outbox.enqueue(
                conn,
                "delivery.changed",
                row["person_id"],
                f"courier-event:{event.event_id}",
                DeliveryChanged(
                    delivery_id=str(row["id"]),
                    case_id=str(row["case_id"]),
                    project_no=row["project_no"],
                    item_name=row["item_name"],
                    waybill_no=event.waybill_no,
                    status=event.status,
                    place=event.place,
                    occurred_at=event.at.isoformat(),
                ),
            )
        return "applied"

    async def reconcile(self, *, max_pages: int = 20, page_size: int = 200) -> int:
        """The worker's job: read the courier's change feed from a little before where we stopped
        (events are de-duplicated by id, so the look-back costs nothing but a re-read and a commit
        that became visible late is still seen); returns how many events were new to us."""
        applied = 0
        # A page must reach past the cursor, or the cursor could never move.
        lookback = min(self.feed_lookback, page_size // 2)
        for _ in range(max_pages):
            cursor = int(
                await self.pool.fetchval("SELECT position FROM bff.sync_cursors WHERE name = $1", FEED_CURSOR)
                or 0
            )
            page = await self.courier.changes(max(0, cursor - lookback), limit=page_size)
            async with self.pool.acquire() as conn, conn.transaction():
                for event in page.events:
                    if await self.apply_event(conn, event, "feed") == "applied":
                        applied += 1
                await conn.execute(
                    """
                    INSERT INTO bff.sync_cursors (name, position) VALUES ($1, $2)
                    ON CONFLICT (name) DO UPDATE SET position = greatest(bff.sync_cursors.position, EXCLUDED.position),
                        updated_at = now()
                    """,
                    FEED_CURSOR,
                    page.next_since,
                )
            if page.next_since <= cursor or len(page.events) < page_size:
                break
        if applied:
            log.info("delivery_reconciled", applied=applied)
        return applied
