"""What the resident's journey (appointments, cases, ratings, idempotency) adds to `create_app`:
its upstreams, its services in the app state, its routes and the names of its dependencies."""

from __future__ import annotations

from typing import Any

from adapters.booking.client import BookingClient
from adapters.cases.client import CaseClient
from adapters.http import Policy, Upstream
from adapters.ratings.client import RatingClient
from bff.appointments.controllers import AppointmentController, SlotController
from bff.appointments.service import AppointmentService
from bff.cases.calendar import CalendarSource
from bff.cases.controllers import (
    CaseController,
    CaseWebhookController,
    RatingController,
    UploadController,
)
from bff.cases.service import CaseService
from bff.idempotency import IdempotencyStore
from bff.platform.settings import Settings
from bff.ratings.service import RatingService

ROUTES: list[Any] = [
    SlotController,
    AppointmentController,
    CaseController,
    RatingController,
    UploadController,
    CaseWebhookController,
]
DEPENDENCIES = ("idempotency", "appointments", "cases", "ratings")


def upstreams(settings: Settings, policy: Policy) -> dict[str, Upstream]:
    return {
        "booking": Upstream("booking", settings.booking_url, policy),
        "cases": Upstream("cases", settings.cases_url, policy),
        "ratings": Upstream("ratings", settings.ratings_url, policy),
    }


def install(state: Any, settings: Settings) -> None:
    """Build the services once the pool, Redis, upstreams and guide cache are in `state`."""
    pool = state.db_pool
    state.idempotency = IdempotencyStore(pool)
    state.appointments = AppointmentService(
        pool,
        BookingClient(state.upstreams["booking"]),
        hold_ttl_s=settings.hold_ttl_s,
        hold_quota=settings.hold_quota,
    )
    state.cases = CaseService(
        pool,
        CaseClient(state.upstreams["cases"]),
        state.guide_cache,
        CalendarSource(pool),
        settings.case_notify_url,
    )
    state.ratings = RatingService(pool, RatingClient(state.upstreams["ratings"]))
