"""我的待办 (home): every domain's to-dos for the resident in one answer that never fails as a whole.

The domains are read through their services' read ports (never their tables): cases (补正, fees
owed, ratings due), appointments, delivery (parcels under way), licences (the renewal to-dos, which
ask the e-licence library, the catalogue and the booking system) and messages (the unread count).
Each source runs concurrently within its own budget, cut from what is left of the request's, so
one that is slow or failing costs at most that budget: its sections then show the resident's last
good copy from Redis (`stale`, with its `asOf`) or, with none, `unavailable`. A source whose
answer changes slowly (the renewals: days from a deadline) is served from a copy younger than its
`fresh_s` without asking again. A home's copies are written together, once its sources are in,
and only those that changed or are older than `KEEP_EVERY_S`: in the steady state of a resident
refreshing the same to-dos, home writes nothing to Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis

from adapters import context
from auth import audit
from auth.principal import Principal
from bff.appointments.service import AppointmentService
from bff.cases.service import CaseService, CaseTodo
from bff.delivery.service import DeliveryService
from bff.home.schemas import (
    AppointmentSection,
    AppointmentTodo,
    BadgeCount,
    Badges,
    BundleSection,
    BundleTodo,
    FeedbackSection,
    FeedbackTicketTodo,
    FeeSection,
    FeeTodo,
    Home,
    HomeSections,
    MessageSection,
    ParcelSection,
    ParcelTodo,
    RatingSection,
    RatingTodo,
    Reason,
    RenewalSection,
    SectionName,
    SupplementSection,
    SupplementTodo,
)
from bff.hotline.service import FeedbackTodo, HotlineService
from bff.licences.service import LicenceService
from bff.lifeapps.service import LifeApplicationService, OpenBundle
from bff.messages.service import MessageService
from bff.platform.logs import get_logger
from bff.platform.uimode import ELDER_HINT
from push.templates import TEMPLATES

log = get_logger("bff.home")

CHINA = timezone(timedelta(hours=8))
Section = (
    BundleSection
    | SupplementSection
    | FeeSection
    | AppointmentSection
    | ParcelSection
    | RenewalSection
    | RatingSection
    | FeedbackSection
    | MessageSection
)
SECTION_TYPES: dict[str, type[Any]] = {
    "bundles": BundleSection,
    "supplements": SupplementSection,
    "fees": FeeSection,
    "appointments": AppointmentSection,
    "parcels": ParcelSection,
    "renewals": RenewalSection,
    "ratings": RatingSection,
    "hotline": FeedbackSection,
    "messages": MessageSection,
}
URGENCY: tuple[SectionName, ...] = (
    # A life event under way holds several cases' 补正 and fees: it comes first.
    "bundles",
    "supplements",
    "fees",
    "appointments",
    "parcels",
    "renewals",
    "ratings",
    "hotline",
    "messages",
)
# 长辈版 leaves these out: a rating is a favour asked, not a to-do.
SECONDARY: frozenset[str] = frozenset({"ratings"})
# Reading cases (and so their fees, ratings and parcels) needs a face-verified session (README).
CASE_LEVEL = 3
# 12345 tickets are read at the level filing needs (bff/hotline/controllers.py: BOOKING_LEVEL).
HOTLINE_LEVEL = 2
RATING_WINDOW = timedelta(days=30)  # a concluded case asks for a rating this long, then never again
# Items shown per section: the kiosk shows a few large ones, elder mode fewer still.
ITEMS = {"app": 5, "miniprogram": 5, "kiosk": 3}
ELDER_ITEMS = 2
_FETCH = 50  # rows read per source (the totals count these)
# The mini-program asks for at most 3 one-time subscriptions per wx.requestSubscribeMessage.
_SUBSCRIBE_MAX = 3
_SUBSCRIBE_FOR: dict[str, tuple[str, ...]] = {
    "bundles": ("case.supplement_requested",),
    "supplements": ("case.supplement_requested",),
    "fees": ("payment.changed",),
    "appointments": ("appointment.reminder",),
    "parcels": ("delivery.changed",),
    "renewals": ("appointment.booked",),
}


@dataclass(frozen=True)
class Budgets:
    """Seconds each source may take (each capped by what is left of the request's budget)."""

    cases: float = 0.5
    appointments: float = 0.5
    parcels: float = 0.5
    renewals: float = 0.8
    messages: float = 0.3
    hotline: float = 0.3
    # Kept back from the request's budget for merging, encoding and the audit record.
    reserve: float = 0.1
    # One read or write of the Redis copies (Redis' own socket timeout is seconds: too long here).
    cache: float = 0.05


# A copy unchanged since this process wrote it is rewritten after this long: a stale copy's asOf
# then lags the last good answer by at most this, and the renewals' copy (served while younger
# than `fresh_s`) is renewed before it stops counting as fresh.
KEEP_EVERY_S = 10.0
# How many copies this process remembers having written (an LRU; forgetting one costs a write).
_KEPT_MAX = 8192


def _stamp(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def _now() -> datetime:
    return datetime.now(CHINA)


class _Partial(Exception):
    """A source's answer with a part it depends on missing (kept only when nothing better is)."""

    def __init__(self, sections: dict[str, Section]) -> None:
        super().__init__("partial")
        self.sections = sections


class HomeService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        *,
        cases: CaseService,
        appointments: AppointmentService,
        delivery: DeliveryService,
        licences: LicenceService,
        messages: MessageService,
        hotline: HotlineService,
        lifeapps: LifeApplicationService,
        budgets: Budgets | None = None,
        fresh_s: float = 30.0,
        stale_s: float = 600.0,
    ) -> None:
        # Read ports of the other domains; home owns no table.
        self.cases = cases
        self.appointments = appointments
        self.delivery = delivery
        self.licences = licences
        self.messages = messages
        self.hotline = hotline
        self.lifeapps = lifeapps
        self.pool = pool
        self.redis = redis
        self.budgets = budgets or Budgets()
        self.fresh_s = fresh_s
        self.stale_s = stale_s
        # key -> (digest of the copy without its asOf, monotonic time written) of this process's writes
        self._kept: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    # --- the sources ---

    async def _case_sections(self, principal: Principal) -> dict[str, Section]:
        todos, bundles = await asyncio.gather(
            self.cases.todos(principal.person_id, _FETCH), self.lifeapps.open_todos(principal.person_id)
        )
        at = _stamp(_now())
        # A life event's member cases are shown through their bundle's one to-do.
        inside = frozenset().union(*(b.case_ids for b in bundles))
        supplements = [_supplement(t) for t in todos if t.open_supplement_id and t.case_id not in inside]
        fees = sorted(
            (_fee(t) for t in todos if t.fee is not None and t.case_id not in inside),
            key=lambda f: f.payable_by,
        )
        recent = _now() - RATING_WINDOW
        ratings = [_rating(t) for t in todos if t.rating_due and t.updated_at >= recent]
        return {
            "bundles": BundleSection(
                status="ok", as_of=at, total=len(bundles), items=[_bundle(b) for b in bundles]
            ),
            "supplements": SupplementSection(
                status="ok", as_of=at, total=len(supplements), items=supplements
            ),
            "fees": FeeSection(status="ok", as_of=at, total=len(fees), items=fees),
            "ratings": RatingSection(status="ok", as_of=at, total=len(ratings), items=ratings),
        }

    async def _appointments(self, principal: Principal) -> dict[str, Section]:
        found = await self.appointments.upcoming(principal.person_id, _FETCH)
        items = [
            AppointmentTodo(
                id=a.id,
                status=a.status,
                starts_at=a.starts_at,
                ends_at=a.ends_at,
                hall_name=a.hall_name,
                item_name=a.item_name,
                ticket_no=a.ticket_no,
                link=f"/appointments/{a.id}",
            )
            for a in found
        ]
        at = _stamp(_now())
        return {"appointments": AppointmentSection(status="ok", as_of=at, total=len(items), items=items)}

    async def _parcels(self, principal: Principal) -> dict[str, Section]:
        found = await self.delivery.under_way(principal.person_id, _FETCH)
        items = [
            ParcelTodo(
                id=p.id,
                case_id=p.case_id,
                project_no=p.project_no,
                item_name=p.item_name,
                carrier=p.carrier,
                waybill_no=p.waybill_no,
                status=p.status,
                link=f"/deliveries/{p.id}",
            )
            for p in found
        ]
        at = _stamp(_now())
        return {"parcels": ParcelSection(status="ok", as_of=at, total=len(items), items=items)}

    async def _renewals(self, principal: Principal) -> dict[str, Section]:
        found = await self.licences.renewals(principal)
        at = _stamp(_now())
        got: dict[str, Section] = {
            "renewals": RenewalSection(status="ok", as_of=at, total=len(found.items), items=found.items)
        }
        if any(todo.status == "unavailable" for todo in found.items):
            # The library answered but the catalogue or the booking system did not: a whole copy
            # from a moment ago is worth more than this one with its slots missing.
            raise _Partial(got)
        return got

    async def _hotline(self, principal: Principal) -> dict[str, Section]:
        found = await self.hotline.awaiting_feedback(principal.person_id, _FETCH)
        items = [_feedback(t) for t in found]
        at = _stamp(_now())
        return {"hotline": FeedbackSection(status="ok", as_of=at, total=len(items), items=items)}

    async def _messages(self, principal: Principal) -> dict[str, Section]:
        count = await self.messages.unread_count(principal.person_id)
        return {"messages": MessageSection(status="ok", as_of=_stamp(_now()), total=count)}

    def _sources(
        self, principal: Principal, wanted: frozenset[str]
    ) -> list[tuple[tuple[str, ...], Callable[[], Awaitable[dict[str, Section]]], float, float]]:
        """(sections, fetch, budget, fresh_s) of each source with a section wanted."""
        b = self.budgets
        everything = [
            (
                ("bundles", "supplements", "fees", "ratings"),
                lambda: self._case_sections(principal),
                b.cases,
                0.0,
            ),
            (("appointments",), lambda: self._appointments(principal), b.appointments, 0.0),
            (("parcels",), lambda: self._parcels(principal), b.parcels, 0.0),
            (("renewals",), lambda: self._renewals(principal), b.renewals, self.fresh_s),
            (("hotline",), lambda: self._hotline(principal), b.hotline, 0.0),
            (("messages",), lambda: self._messages(principal), b.messages, 0.0),
        ]
        return [s for s in everything if wanted.intersection(s[0])]

    # --- running them ---

    def _key(self, person_id: str, name: str) -> str:
        # One hash tag per person: the copies are read with one MGET, which a cluster answers only
        # for keys of one slot.
        return f"home:{{{person_id}}}:{name}"

    async def _copies(self, person_id: str, names: Sequence[str]) -> dict[str, Section]:
        try:
            raw = await asyncio.wait_for(
                self.redis.mget([self._key(person_id, n) for n in names]), self.budgets.cache
            )
        except Exception as exc:  # a cache that cannot answer is no copy, never a 5xx
            log.warning("home_copy_unreadable", error=type(exc).__name__)
            return {}
        copies: dict[str, Section] = {}
        for name, blob in zip(names, raw, strict=True):
            if blob is None:
                continue
            try:
                copies[name] = msgspec.json.decode(blob, type=SECTION_TYPES[name])
            except msgspec.DecodeError:
                continue  # a copy of an older shape: as good as none
        return copies

    async def _keep(self, person_id: str, sections: dict[str, Section]) -> None:
        """One pipeline for the copies that changed or are due again (none in the steady state)."""
        now = time.monotonic()
        due: list[tuple[str, bytes, bytes]] = []
        for name, section in sections.items():
            key = self._key(person_id, name)
            digest = hashlib.blake2b(
                msgspec.json.encode(msgspec.structs.replace(section, as_of=None)), digest_size=16
            ).digest()
            last = self._kept.get(key)
            if last is not None and last[0] == digest and now - last[1] < KEEP_EVERY_S:
                continue
            due.append((key, digest, msgspec.json.encode(section)))
        if not due:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _, blob in due:
                    pipe.set(key, blob, ex=int(self.stale_s))
                await asyncio.wait_for(pipe.execute(), self.budgets.cache)
        except Exception as exc:  # the answer is served without its copy kept
            log.warning("home_copy_not_kept", error=type(exc).__name__)
            return
        for key, digest, _ in due:
            self._kept[key] = (digest, now)
            self._kept.move_to_end(key)
        while len(self._kept) > _KEPT_MAX:
            self._kept.popitem(last=False)

    async def _run(
        self,
        person_id: str,
        names: tuple[str, ...],
        fetch: Callable[[], Awaitable[dict[str, Section]]],
        budget: float,
        fresh_s: float,
        keep: dict[str, Section],
    ) -> dict[str, Section]:
        """The source's sections: its answer (added to `keep`), a fresh copy, or the fallback."""
        started = time.monotonic()
        left = context.remaining()
        if left is not None:
            budget = min(budget, left - self.budgets.reserve)
        if fresh_s > 0:
            copies = await self._copies(person_id, names)
            if len(copies) == len(names) and all(_age(c) < fresh_s for c in copies.values()):
                return copies
        # What the source may take: its budget less the copy read before it and the one after it
        # (reading the fallback, or the home's copies kept), so the whole stays within the budget.
        budget -= time.monotonic() - started + self.budgets.cache
        reason: Reason = "timeout"
        if budget > 0:
            try:
                # The narrowed deadline reaches the upstream clients too, so a call cut off here is
                # not retried past it.
                with context.budget(budget):
                    got = await asyncio.wait_for(fetch(), budget)
            except _Partial as partial:
                copies = await self._copies(person_id, names)
                if len(copies) < len(names):
                    return partial.sections  # not kept: it would hide the whole copy next time
                for kept in copies.values():
                    kept.status = "stale"
                return copies
            except TimeoutError:
                log.warning("home_section_timeout", sections=",".join(names), budget_s=round(budget, 3))
            except Exception as exc:  # one domain failing is one section, never a 5xx
                reason = "failed"
                log.warning("home_section_failed", sections=",".join(names), error=type(exc).__name__)
            else:
                keep.update(got)
                return got
        copies = await self._copies(person_id, names)
        out: dict[str, Section] = {}
        for name in names:
            copy = copies.get(name)
            if copy is not None:
                copy.status = "stale"
                out[name] = copy
            else:
                out[name] = SECTION_TYPES[name](status="unavailable", as_of=None, total=0, reason=reason)
        return out

    async def _gather(self, principal: Principal, wanted: frozenset[str]) -> dict[str, Section]:
        allowed = wanted
        out: dict[str, Section] = {}
        if principal.level < CASE_LEVEL:
            allowed = wanted - {"bundles", "supplements", "fees", "ratings", "parcels"}
        if principal.level < HOTLINE_LEVEL:
            allowed = allowed - {"hotline"}
        if allowed != wanted:
            for name in wanted - allowed:
                out[name] = SECTION_TYPES[name](
                    status="unavailable", as_of=None, total=0, reason="step_up_required"
                )
        sources = self._sources(principal, allowed)
        keep: dict[str, Section] = {}
        results = await asyncio.gather(
            *(
                self._run(principal.person_id, names, fetch, budget, fresh, keep)
                for names, fetch, budget, fresh in sources
            )
        )
        await self._keep(principal.person_id, keep)
        for result in results:
            out.update({k: v for k, v in result.items() if k in allowed})
        return out

    async def _audit(self, principal: Principal, action: str) -> None:
        # Like every personal read: no record, no answer (the sections' fallbacks are for upstreams,
        # never for the audit trail).
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action=action,
            object=f"person:{principal.person_id}",
            result="masked",
            channel=principal.channel,
        )

    # --- the routes' answers ---

    async def home(self, principal: Principal, *, elder: bool) -> tuple[Home, str]:
        """The answer, and its ETag (over everything but the read times, so a client holding the
        same to-dos gets a 304 however often it asks)."""
        wanted = frozenset(n for n in URGENCY if not (elder and n in SECONDARY))
        sections = await self._gather(principal, wanted)
        shown = ELDER_ITEMS if elder else ITEMS.get(principal.channel, 5)
        for section in sections.values():
            items = getattr(section, "items", None)
            if items is not None:
                section.items = items[:shown]  # type: ignore[union-attr]
        order = [n for n in URGENCY if n in sections and sections[n].total > 0]
        templates: list[str] | None = None
        if principal.channel == "miniprogram":
            templates = []
            for name in order:
                for topic in _SUBSCRIBE_FOR.get(name, ()):
                    tid = TEMPLATES[topic].wechat_template
                    if tid and tid not in templates:
                        templates.append(tid)
            templates = templates[:_SUBSCRIBE_MAX]
        body = Home(
            channel=principal.channel,
            order=order,
            sections=HomeSections(**sections),  # type: ignore[arg-type]
            subscribe_templates=templates,
            display=ELDER_HINT if elder else None,
        )
        await self._audit(principal, "home.read")
        return body, _etag(body)

    @staticmethod
    def encode(body: Home) -> bytes:
        return msgspec.json.encode(body)

    async def badges(self, principal: Principal) -> Badges:
        sections = await self._gather(principal, frozenset(URGENCY))
        todo_sections = [s for n, s in sections.items() if n != "messages" and s.reason != "step_up_required"]
        statuses = {s.status for s in todo_sections}
        todos = BadgeCount(
            status="unavailable" if statuses == {"unavailable"} else "stale" if statuses - {"ok"} else "ok",
            count=None
            if statuses == {"unavailable"}
            else sum(s.total for s in todo_sections if s.status != "unavailable"),
        )
        message = sections["messages"]
        messages = BadgeCount(
            status=message.status, count=None if message.status == "unavailable" else message.total
        )
        await self._audit(principal, "home.badges")
        return Badges(todos=todos, messages=messages)


def _age(section: Section) -> float:
    if section.as_of is None:
        return float("inf")
    return (_now() - datetime.fromisoformat(section.as_of)).total_seconds()


def _etag(body: Home) -> str:
    def strip(section: Any) -> Any:
        return None if section is None else msgspec.structs.replace(section, as_of=None)

    timeless = msgspec.structs.replace(
        body,
        sections=HomeSections(
            **{f: strip(getattr(body.sections, f)) for f in body.sections.__struct_fields__}
        ),
    )
    return '"' + hashlib.sha256(msgspec.json.encode(timeless)).hexdigest()[:32] + '"'


def _bundle(b: OpenBundle) -> BundleTodo:
    return BundleTodo(
        application_id=b.application_id,
        event_name=b.event_name,
        state=b.state,
        state_label=b.state_label,
        next_action=b.next_kind,
        next_action_text=b.next_text,
        members=b.members,
        concluded=b.concluded,
        link=f"/life-events/applications/{b.application_id}",
    )


def _supplement(t: CaseTodo) -> SupplementTodo:
    assert t.open_supplement_id is not None
    return SupplementTodo(
        case_id=t.case_id,
        project_no=t.project_no,
        item_name=t.item_name,
        supplement_id=t.open_supplement_id,
        link=f"/cases/{t.case_id}",
    )


def _fee(t: CaseTodo) -> FeeTodo:
    assert t.fee is not None
    return FeeTodo(
        case_id=t.case_id,
        project_no=t.project_no,
        item_name=t.item_name,
        fee_id=t.fee.fee_id,
        total_fen=t.fee.total_fen,
        payable_by=t.fee.payable_by,
        link=f"/cases/{t.case_id}",
    )


def _rating(t: CaseTodo) -> RatingTodo:
    return RatingTodo(
        case_id=t.case_id,
        project_no=t.project_no,
        item_name=t.item_name,
        changed_at=_stamp(t.updated_at),
        link=f"/cases/{t.case_id}/rating",
    )


def _feedback(t: FeedbackTodo) -> FeedbackTicketTodo:
    return FeedbackTicketTodo(
        ticket_id=t.ticket_id,
        ticket_no=t.ticket_no,
        kind=t.kind,
        title=t.title,
        department_name=t.department_name,
        answered_at=_stamp(t.answered_at),
        link=f"/hotline/tickets/{t.ticket_id}",
    )
