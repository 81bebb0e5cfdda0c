"""Typed dependency providers: a route names the service it needs (`cases: NamedDependency[
CaseService]`) and gets the process's one instance from the composition root."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State
from litestar.di import Provide

from auth.guards import provide_principal
from auth.runtime import AuthRuntime
from bff.addresses.service import AddressService
from bff.appointments.service import AppointmentService
from bff.appointments.waitlist import WaitlistService
from bff.cases.service import CaseService
from bff.catalogue.service import CatalogueService
from bff.delivery.service import DeliveryService
from bff.home.service import HomeService
from bff.hotline.service import HotlineService
from bff.idempotency import IdempotencyStore
from bff.licences.service import LicenceService
from bff.lifeapps.service import LifeApplicationService
from bff.mandates.service import MandateService
from bff.messages.service import MessageService
from bff.ops.health import Health
from bff.payments.service import PaymentService
from bff.ratings.service import RatingService
from bff.uploads.service import UploadService
from bff.wiring import Root


def root(state: State) -> Root:
    value: Root = state.root
    return value


def provide_auth(state: State) -> AuthRuntime:
    return root(state).auth


def provide_idempotency(state: State) -> IdempotencyStore:
    return root(state).idempotency


def provide_catalogue(state: State) -> CatalogueService:
    return root(state).catalogue


def provide_uploads(state: State) -> UploadService:
    return root(state).uploads


def provide_appointments(state: State) -> AppointmentService:
    return root(state).appointments


def provide_waitlist(state: State) -> WaitlistService:
    return root(state).waitlist


def provide_cases(state: State) -> CaseService:
    return root(state).cases


def provide_ratings(state: State) -> RatingService:
    return root(state).ratings


def provide_payments(state: State) -> PaymentService:
    return root(state).payments


def provide_addresses(state: State) -> AddressService:
    return root(state).addresses


def provide_delivery(state: State) -> DeliveryService:
    return root(state).delivery


def provide_messages(state: State) -> MessageService:
    return root(state).messages


def provide_licences(state: State) -> LicenceService:
    return root(state).licences


def provide_hotline(state: State) -> HotlineService:
    return root(state).hotline


def provide_lifeapps(state: State) -> LifeApplicationService:
    return root(state).lifeapps


def provide_home(state: State) -> HomeService:
    return root(state).home


def provide_mandates(state: State) -> MandateService:
    return root(state).mandates


def provide_health(state: State) -> Health:
    return root(state).health


def dependencies() -> dict[str, Any]:
    return {
        "principal": Provide(provide_principal),
        "auth": Provide(provide_auth, sync_to_thread=False),
        "idempotency": Provide(provide_idempotency, sync_to_thread=False),
        "catalogue": Provide(provide_catalogue, sync_to_thread=False),
        "uploads": Provide(provide_uploads, sync_to_thread=False),
        "appointments": Provide(provide_appointments, sync_to_thread=False),
        "waitlist": Provide(provide_waitlist, sync_to_thread=False),
        "cases": Provide(provide_cases, sync_to_thread=False),
        "ratings": Provide(provide_ratings, sync_to_thread=False),
        "payments": Provide(provide_payments, sync_to_thread=False),
        "addresses": Provide(provide_addresses, sync_to_thread=False),
        "delivery": Provide(provide_delivery, sync_to_thread=False),
        "messages": Provide(provide_messages, sync_to_thread=False),
        "licences": Provide(provide_licences, sync_to_thread=False),
        "hotline": Provide(provide_hotline, sync_to_thread=False),
        "home": Provide(provide_home, sync_to_thread=False),
        "mandates": Provide(provide_mandates, sync_to_thread=False),
        "lifeapps": Provide(provide_lifeapps, sync_to_thread=False),
        "health": Provide(provide_health, sync_to_thread=False),
    }
