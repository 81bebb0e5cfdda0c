"""The composition root: the one place where the process is put together from `Settings`.

`open_root(settings)` builds the PostgreSQL pool, the Redis client, ONE `Upstream` per upstream
system (its breaker, retry budget and bulkhead shared by every caller in the process), one typed
client per upstream, every service, and the explicit list of background jobs. The API
(`create_app`) and the worker (`sanxiang worker`) both start from it, so a worker job and an API
route that reach the same upstream go through the same breaker.

Adding a domain is one block here (its upstream, client, service and jobs) and its controllers in
`bff/app.py`'s route list; nothing else is wired anywhere else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from adapters.booking.client import BookingClient
from adapters.cases.client import CaseClient
from adapters.catalogue.client import CatalogueClient
from adapters.courier.client import CourierClient
from adapters.elicence.client import ElicenceClient
from adapters.hotline.client import HotlineClient
from adapters.http import Policy, Upstream
from adapters.idp.client import IdpClient
from adapters.pushgw.client import PushGatewayClient
from adapters.ratings.client import RatingClient
from adapters.sms.client import SmsClient
from adapters.wechat.client import WeChatClient
from adapters.wechat.token import AccessTokenCache
from adapters.wechatpay import crypto as wechatpay_crypto
from adapters.wechatpay.client import WeChatPayClient
from auth import crypto, keys, persons
from auth.audit import AuditAnchor
from auth.denylist import DenyCache
from auth.runtime import AuthConfig, AuthRuntime
from auth.sessions import Lifetimes
from auth.tokens import TokenService
from bff.addresses.service import AddressService
from bff.appointments.service import AppointmentService
from bff.appointments.waitlist import WaitlistService
from bff.cases.service import CaseService
from bff.catalogue.guide_cache import GuideCache
from bff.catalogue.mirror import CatalogueMirror
from bff.catalogue.misses import SearchMisses
from bff.catalogue.semantic import SemanticModel
from bff.catalogue.service import CatalogueService
from bff.catalogue.sync import CatalogueSync
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
from bff.platform import paging
from bff.platform.clock import CalendarSource
from bff.platform.db import create_pool
from bff.platform.lifecycle import Drain
from bff.platform.redis import create_redis, learn_topology
from bff.platform.settings import Settings
from bff.ratings.service import RatingService
from bff.uploads.service import UploadService
from push.channels.apppush import AppPushChannel
from push.channels.sms import SmsChannel
from push.channels.wechat import WeChatSubscribeChannel
from push.consumer import Consumer
from push.ledger import Ledger
from push.notifier import Notifier
from push.relay import Relay


@dataclass(frozen=True)
class Job:
    """A periodic job of the worker: `run()` every `interval` seconds, within `budget` seconds."""

    name: str
    interval: float
    budget: float
    run: Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Loop:
    """A long-running loop of the worker, restarted if it fails: `leader_only` ones (the outbox
    relay) run in the leader only, the others (stream consumers) in every worker."""

    name: str
    leader_only: bool
    run: Callable[[], Awaitable[object]]


def policy(settings: Settings, **overrides: float) -> Policy:
    """The resilience policy of an upstream: the settings' defaults, with that upstream's own values."""
    base = {
        "connect_timeout": settings.upstream_connect_timeout_s,
        "call_timeout": settings.upstream_call_timeout_s,
        "max_in_flight": settings.upstream_max_in_flight,
        "max_retries": settings.upstream_max_retries,
        "retry_budget_ratio": settings.upstream_retry_budget_ratio,
        "failure_rate": settings.breaker_failure_rate,
        "minimum_calls": settings.breaker_minimum_calls,
        "window_seconds": settings.breaker_window_s,
        "open_seconds": settings.breaker_open_s,
        "half_open_probes": settings.breaker_half_open_probes,
    }
    base.update(overrides)
    return Policy(**base)  # type: ignore[arg-type]


def upstreams(settings: Settings) -> dict[str, Upstream]:
    """One `Upstream` per upstream system. The only place one is made."""
    return {
        "catalogue": Upstream("catalogue", settings.catalogue_url, policy(settings)),
        "booking": Upstream("booking", settings.booking_url, policy(settings)),
        "cases": Upstream("cases", settings.cases_url, policy(settings)),
        "ratings": Upstream("ratings", settings.ratings_url, policy(settings)),
        "wechat": Upstream("wechat", settings.wechat_url, policy(settings)),
        "idp": Upstream("idp", settings.idp_url, policy(settings)),
        "wechatpay": Upstream("wechatpay", settings.wechatpay_url, policy(settings)),
        "courier": Upstream("courier", settings.courier_url, policy(settings)),
        "pushgw": Upstream("pushgw", settings.pushgw_url, policy(settings)),
        "sms": Upstream("sms", settings.sms_url, policy(settings)),
        "elicence": Upstream("elicence", settings.elicence_url, policy(settings)),
        "hotline": Upstream("hotline", settings.hotline_url, policy(settings)),
    }


# --- identity: the only place auth meets Settings ---


def key_ring(settings: Settings) -> keys.KeyRing:
    if settings.auth_signing_keys:
        return keys.parse_entries(settings.auth_signing_keys, settings.auth_active_kid)
    return keys.dev_ring(settings.auth_dev_seed)


def token_service(settings: Settings) -> TokenService:
    return TokenService(
        key_ring(settings),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        ttl_s=settings.auth_access_ttl_s,
        leeway_s=settings.auth_leeway_s,
    )


def pii_crypto(settings: Settings) -> crypto.PiiCrypto:
    return crypto.from_settings(
        settings.pii_cipher,
        settings.pii_keys,
        settings.pii_active_key,
        settings.pii_index_key,
        settings.auth_dev_seed,
    )


def auth_config(settings: Settings) -> AuthConfig:
    return AuthConfig(
        lifetimes={
            "app": Lifetimes(settings.auth_app_idle_s, settings.auth_app_absolute_s),
            "miniprogram": Lifetimes(settings.auth_miniprogram_idle_s, settings.auth_miniprogram_absolute_s),
            "kiosk": Lifetimes(settings.auth_kiosk_idle_s, settings.auth_kiosk_absolute_s),
        },
        refresh_grace_s=settings.auth_refresh_grace_s,
        kiosk_skew_s=settings.auth_kiosk_clock_skew_s,
        kiosk_face_min_score=settings.auth_kiosk_face_min_score,
        rate_window_s=settings.auth_rate_window_s,
        rate_per_ip=settings.auth_rate_per_ip,
        rate_per_subject=settings.auth_rate_per_subject,
        lockout_failures=settings.auth_lockout_failures,
        lockout_window_s=settings.auth_lockout_window_s,
        lockout_s=settings.auth_lockout_s,
    )


def audit_anchor_key(settings: Settings) -> bytes:
    if settings.audit_anchor_key:
        return base64.b64decode(settings.audit_anchor_key)
    return hashlib.sha256(f"audit-anchor:{settings.auth_dev_seed}".encode()).digest()


def licence_show_key(settings: Settings) -> bytes:
    if settings.licence_show_key:
        return settings.licence_show_key.encode()
    return hashlib.sha256(f"licence-show:{settings.auth_dev_seed}".encode()).digest()


def wechatpay_client(settings: Settings, upstream: Upstream) -> WeChatPayClient:
    """The merchant's key from its file; empty outside prod: the dev merchant's (settings refuse
    that in prod)."""
    key_file = Path(settings.wechatpay_merchant_key_file or wechatpay_crypto.DEV_KEY_FILE)
    return WeChatPayClient(
        upstream,
        mchid=settings.wechatpay_mchid,
        appid=settings.wechatpay_appid,
        merchant_key=wechatpay_crypto.load_private_key(key_file.read_bytes()),
        merchant_serial=settings.wechatpay_merchant_serial,
        apiv3_key=settings.wechatpay_apiv3_key,
    )


def payment_notify_url(settings: Settings) -> str:
    return settings.payment_notify_url or (
        f"http://{settings.api_host}:{settings.api_port}/api/v1/payments/wechat/notify"
    )


def hotline_attachment_base_url(settings: Settings) -> str:
    return settings.hotline_attachment_base_url or (
        f"http://{settings.api_host}:{settings.api_port}/api/v1/uploads"
    )


def upload_dir(settings: Settings) -> Path:
    return Path(settings.upload_dir) if settings.upload_dir else Path(settings.data_dir) / "uploads"


@dataclass
class Root:
    """Everything a process runs on. Made by `open_root`; closed when it leaves."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    upstreams: dict[str, Upstream]
    wechat: WeChatClient
    auth: AuthRuntime
    idempotency: IdempotencyStore
    catalogue_mirror: CatalogueMirror
    catalogue: CatalogueService
    catalogue_sync: CatalogueSync
    search_misses: SearchMisses
    uploads: UploadService
    appointments: AppointmentService
    waitlist: WaitlistService
    cases: CaseService
    ratings: RatingService
    health: Health
    drain: Drain
    audit_anchor: AuditAnchor
    payments: PaymentService
    addresses: AddressService
    delivery: DeliveryService
    notifier: Notifier
    relay: Relay
    consumer: Consumer
    messages: MessageService
    elicence: ElicenceClient
    licences: LicenceService
    hotline: HotlineService
    home: HomeService
    mandates: MandateService
    lifeapps: LifeApplicationService
    jobs: list[Job] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)


def _build(settings: Settings, pool: asyncpg.Pool, redis: Redis, ups: dict[str, Upstream]) -> Root:
    # Upstream clients: one each, shared by the API, the worker's jobs and (later) push.
    catalogue_client = CatalogueClient(ups["catalogue"])
    wechat = WeChatClient(ups["wechat"], settings.wechat_appid, settings.wechat_secret)
    wechat.use_token_cache(AccessTokenCache(redis, settings.wechat_appid, wechat.fetch_stable_token))
    idp = IdpClient(
        ups["idp"],
        client_id=settings.idp_client_id,
        client_secret=settings.idp_client_secret,
        issuer=settings.idp_url,
    )
    booking = BookingClient(ups["booking"])
    case_client = CaseClient(ups["cases"])
    rating_client = RatingClient(ups["ratings"])
    courier = CourierClient(ups["courier"])
    elicence = ElicenceClient(ups["elicence"], settings.elicence_client_id, settings.elicence_secret)

    # Identity.
    auth = AuthRuntime(
        pool=pool,
        redis=redis,
        tokens=token_service(settings),
        crypto=pii_crypto(settings),
        wechat=wechat,
        idp=idp,
        config=auth_config(settings),
        deny=None if settings.redis_cluster else DenyCache(redis),
    )
    idempotency = IdempotencyStore(
        pool,
        redis=redis,
        write_rate=settings.write_rate_per_user,
        write_window_s=settings.write_rate_window_s,
    )

    # Catalogue: the mirror (each API process holds the search index), guides, the sync.
    mirror = CatalogueMirror(
        pool,
        redis,
        poll_seconds=settings.catalogue_index_poll_s,
        stale_after_seconds=settings.catalogue_stale_after_s,
        model=SemanticModel(enabled=settings.search_semantic),
    )
    guides = GuideCache(
        redis,
        catalogue_client,
        fresh_seconds=settings.item_cache_ttl_s,
        stale_seconds=settings.item_stale_ttl_s,
        budget_seconds=settings.item_budget_ms / 1000,
    )
    search_misses = SearchMisses(
        pool, flush_seconds=settings.search_misses_flush_s, keep_days=settings.search_misses_keep_days
    )
    catalogue = CatalogueService(mirror, guides, search_misses)
    catalogue_sync = CatalogueSync(
        pool,
        redis,
        catalogue_client,
        page_size=settings.catalogue_sync_page,
        page_timeout_s=settings.catalogue_sync_call_timeout_s,
        full_every=timedelta(seconds=settings.catalogue_full_resync_s),
        interval_s=settings.catalogue_sync_interval_s,
        session_dsn=settings.database_direct_url,
        lookback=settings.feed_lookback,
    )

    # The resident's journey.
    uploads = UploadService(
        pool,
        upload_dir(settings),
        max_bytes=settings.upload_max_bytes,
        quota_count=settings.upload_quota_count,
        quota_bytes=settings.upload_quota_bytes,
        unattached_ttl_s=settings.upload_unattached_ttl_s,
    )
    appointments = AppointmentService(
        pool,
        booking,
        hold_ttl_s=settings.hold_ttl_s,
        hold_quota=settings.hold_quota,
        hold_day_quota=settings.hold_day_quota,
        places=catalogue.place,  # read port: hall and item names from the mirror
    )
    waitlist = WaitlistService(
        pool,
        appointments,
        booking,
        offer_ttl_s=settings.waitlist_offer_ttl_s,
        max_per_person=settings.waitlist_max_per_person,
    )
    appointments.seat_freed = waitlist.seat_freed  # a seat freed through us is offered at once

    async def contact_of(person_id: str) -> tuple[str | None, str | None]:
        person = await persons.load(pool, auth.crypto, person_id)
        return (person.name, person.phone) if person else (None, None)

    cases = CaseService(
        pool,
        case_client,
        catalogue,
        uploads,
        CalendarSource(pool),
        contact_of=contact_of,
        notify_url=settings.case_notify_url,
        webhook_secret=settings.case_webhook_secret,
        webhook_window_s=settings.case_webhook_window_s,
        feed_lookback=settings.feed_lookback,
    )
    ratings = RatingService(pool, rating_client, cases)
    cases.ratings = ratings  # the case view's port onto ratings (ratings depends on cases)
    audit_anchor = AuditAnchor(pool, audit_anchor_key(settings))
    drain = Drain(settings.shutdown_grace_s)

    # Payments: WeChat Pay v3 for case fees; cases sees it only through two ports.
    payments = PaymentService(
        pool,
        redis,
        wechatpay_client(settings, ups["wechatpay"]),
        cases,
        notify_url=payment_notify_url(settings),
        expire_s=settings.payment_expire_s,
        check_after_s=settings.payment_check_after_s,
        check_max_s=settings.payment_check_max_s,
        notify_window_s=settings.wechatpay_notify_window_s,
    )
    cases.payments = payments  # the case view: payment steps on the timeline, the fee's order
    cases.event_hook = payments  # refund_requested -> a refund, in the event's transaction

    # Delivery of results: my addresses, shipments at the courier, tracking.
    addresses = AddressService(pool, auth.crypto, catalogue, max_per_person=settings.address_max_per_person)
    delivery = DeliveryService(
        pool,
        courier,
        cases,
        catalogue,
        addresses,
        auth.crypto,
        notify_url=settings.courier_notify_url,
        webhook_secret=settings.courier_webhook_secret,
        webhook_window_s=settings.courier_webhook_window_s,
        feed_lookback=settings.courier_feed_lookback,
    )
    cases.deliveries = delivery  # the case timeline's port onto shipments (delivery depends on cases)

    # 12345 tickets: filed and followed through the hotline's channel API; steps go to the outbox.
    hotline = HotlineService(
        pool,
        HotlineClient(ups["hotline"], settings.hotline_channel_key),
        catalogue,
        cases,
        uploads,
        auth.crypto,
        notify_url=settings.hotline_notify_url,
        webhook_secret=settings.hotline_webhook_secret,
        webhook_window_s=settings.hotline_webhook_window_s,
        feed_lookback=settings.hotline_feed_lookback,
        attachment_base_url=hotline_attachment_base_url(settings),
    )

    # Notifications: outbox -> relay -> stream -> consumers -> channels (WeChat through the one client).
    pii = auth.crypto

    async def phone_of(person_id: str) -> str | None:
        person = await persons.load(pool, pii, person_id)
        return person.phone if person else None

    callback = settings.push_callback_base_url.rstrip("/")
    notifier = Notifier(
        pool,
        redis,
        [
            WeChatSubscribeChannel(wechat, state=settings.wechat_miniprogram_state),
            AppPushChannel(
                PushGatewayClient(
                    ups["pushgw"],
                    settings.pushgw_app_key,
                    settings.pushgw_secret,
                    f"{callback}/api/v1/push/pushgw/notify" if callback else None,
                )
            ),
            SmsChannel(
                SmsClient(ups["sms"], settings.sms_access_key_id, settings.sms_secret, settings.sms_sign_name)
            ),
        ],
        phone_of,
        lease_s=settings.push_lease_s,
    )
    assert settings.database_url
    relay = Relay(
        pool,
        redis,
        settings.database_url,
        poll_s=settings.push_relay_poll_s,
        republish_after_s=settings.push_republish_after_s,
    )
    consumer = Consumer(
        redis,
        notifier,
        concurrency=settings.push_consumer_concurrency,
        claim_idle_s=settings.push_claim_idle_s,
    )
    messages = MessageService(
        pool,
        redis,
        Ledger(pool),
        notifier,
        pushgw_secret=settings.pushgw_secret,
        sms_secret=settings.sms_secret,
        heartbeat_s=settings.push_sse_heartbeat_s,
    )

    # E-licences: the wallet, 亮证 and its counter check, and who used my data.
    licences = LicenceService(
        pool,
        elicence,
        auth.crypto,
        show_key=licence_show_key(settings),
        show_ttl_s=settings.licence_show_ttl_s,
        catalogue=catalogue,
        appointments=appointments,
    )

    # Home: every domain's to-dos in one answer, each read through its service's read port.
    # 代办: the mandates service is also what resolves X-Acting-For in auth (auth may not import bff).
    mandates = MandateService(pool, auth.crypto, catalogue)
    auth.acting = mandates

    # 一件事一次办: one application for a life event, its member cases made through the case domain.
    lifeapps = LifeApplicationService(pool, auth.crypto, catalogue, cases, payments)

    home = HomeService(
        pool,
        redis,
        cases=cases,
        appointments=appointments,
        delivery=delivery,
        licences=licences,
        messages=messages,
        hotline=hotline,
        lifeapps=lifeapps,
        fresh_s=settings.home_fresh_s,
        stale_s=settings.home_stale_s,
    )

    jobs = [
        # A lost webhook is caught up from the case system's change feed.
        Job("cases_reconcile", interval=15.0, budget=60.0, run=cases.reconcile),
        # A lost courier callback is caught up from the courier's change feed.
        Job("delivery_reconcile", interval=15.0, budget=60.0, run=delivery.reconcile),
        # Shipments whose courier answer was lost are asked again with the same request id.
        Job("delivery_resolve_pending", interval=30.0, budget=60.0, run=delivery.resolve_pending),
        # A lost 12345 webhook is caught up from the hotline's change feed.
        Job("hotline_reconcile", interval=15.0, budget=60.0, run=hotline.reconcile),
        # Filings whose 12345 answer was lost are sent again, the same bytes under the same request id.
        Job("hotline_resolve_filing", interval=30.0, budget=60.0, run=hotline.resolve_filing),
        Job("cases_resolve_submitting", interval=60.0, budget=60.0, run=cases.resolve_submitting),
        # Bookings whose upstream answer was lost are asked again with the same request id.
        Job("appointments_resolve_pending", interval=30.0, budget=60.0, run=appointments.resolve_pending),
        # The day-before reminder (each booking once: the outbox de-duplicates by booking).
        # Waitlist offers settled (claimed, lapsed) and seats freed any other way offered to the line.
        Job("appointments_waitlist", interval=5.0, budget=60.0, run=waitlist.run),
        Job("appointments_remind", interval=600.0, budget=120.0, run=appointments.remind_tomorrow),
        # Idempotency records past their keep time (>= 24 h, API.md).
        Job("idempotency_expire", interval=600.0, budget=60.0, run=idempotency.expire),
        Job("uploads_expire", interval=600.0, budget=120.0, run=uploads.expire),
        # The worker ticks often; the sync runs at `catalogue_sync_interval_s`.
        Job("catalogue_sync", interval=5.0, budget=900.0, run=catalogue_sync.tick),
        # Failed-search counts older than `search_misses_keep_days`.
        Job("search_misses_expire", interval=3600.0, budget=60.0, run=search_misses.expire),
        # The audit chains' heads, signed and logged outside the table (a truncated tail shows).
        Job("audit_anchor", interval=settings.audit_anchor_interval_s, budget=30.0, run=audit_anchor.run),
        # Orders that heard nothing are asked about (backoff); expired ones are closed upstream.
        Job("payments_reconcile", interval=5.0, budget=60.0, run=payments.reconcile),
        # Paid orders are told to the case system, once, from their pending flag.
        Job("payments_report_paid", interval=5.0, budget=60.0, run=payments.report_paid),
        # Requested refunds go to WeChat Pay (same out_refund_no every time); silent ones are asked.
        Job("payments_refunds", interval=5.0, budget=60.0, run=payments.submit_refunds),
        # Yesterday's trade bill against the ledger, once a day (checked hourly).
        Job("payments_bill_check", interval=3600.0, budget=300.0, run=payments.bill_tick),
        # Licences ending within 90 days: one reminder per threshold (90, 30, 7 days) each.
        Job("licences_remind_expiring", interval=3600.0, budget=600.0, run=licences.remind_expiring),
    ]
    loops = [
        Loop("push_relay", leader_only=True, run=relay.run),
        Loop("push_consumer", leader_only=False, run=consumer.run),
    ]
    return Root(
        settings=settings,
        pool=pool,
        redis=redis,
        upstreams=ups,
        wechat=wechat,
        auth=auth,
        idempotency=idempotency,
        catalogue_mirror=mirror,
        catalogue=catalogue,
        catalogue_sync=catalogue_sync,
        search_misses=search_misses,
        uploads=uploads,
        appointments=appointments,
        waitlist=waitlist,
        cases=cases,
        ratings=ratings,
        health=Health(pool, redis, ups, drain),
        drain=drain,
        audit_anchor=audit_anchor,
        payments=payments,
        addresses=addresses,
        delivery=delivery,
        notifier=notifier,
        relay=relay,
        consumer=consumer,
        messages=messages,
        elicence=elicence,
        licences=licences,
        hotline=hotline,
        home=home,
        mandates=mandates,
        lifeapps=lifeapps,
        jobs=jobs,
        loops=loops,
    )


@contextlib.asynccontextmanager
async def open_root(settings: Settings) -> AsyncIterator[Root]:
    """The process's root, open for the duration of the block; everything is closed after it."""
    paging.use_key(paging.derive_key(settings.cursor_key, settings.auth_dev_seed))
    pool = await create_pool(settings)
    redis = create_redis(settings)
    ups = upstreams(settings)
    try:
        await learn_topology(redis)
        for upstream in ups.values():
            await upstream.start()
        root = _build(settings, pool, redis, ups)
        if root.auth.deny is not None:
            root.auth.deny.start()
        try:
            yield root
        finally:
            if root.auth.deny is not None:
                await root.auth.deny.stop()
    finally:
        for upstream in ups.values():
            await upstream.close()
        await redis.aclose()
        # A graceful close waits for every connection to come back; one held by a task that is
        # still unwinding must not keep the process from exiting (close terminates when cancelled).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.close(), timeout=5.0)
