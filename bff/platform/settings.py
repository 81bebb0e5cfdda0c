"""Settings: one Struct, read from the environment (and an optional `.env`), validated at start.

Each field is read from the environment variable of the same name in upper case
(`database_url` <- `DATABASE_URL`). A value that does not convert stops the process with a
message naming the variable, never a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import msgspec


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    env: Literal["dev", "test", "prod"] = "dev"
    # PostgreSQL / Redis. Unset -> `sanxiang dev` and the tests start embedded servers.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: str = str(Path.home() / ".local" / "share" / "sanxiang")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8100
    # Upstream base URLs; `dev` points them at the local sandbox.
    catalogue_url: str = "http://127.0.0.1:8100/catalogue"

    cors_origins: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: int = 1_048_576
    # Path + query longer than this is a 414 problem (uvicorn's own refusal starts far above it).
    max_url_bytes: int = 8192
    # Behind TLS (the load balancer terminates it): the HSTS max-age to send; 0 sends none.
    hsts_max_age_s: int = 0
    # HMAC key of page cursors (any length; 32 random bytes, base64). Empty in dev/test: derived from
    # `auth_dev_seed`. Required in prod.
    cursor_key: str = ""
    max_in_flight: int = 512
    # Homes (`/api/v1/home` and its badges, one fan-out over every domain) in flight per process
    # beyond which they get a fast 503: what one process answers well within the sources' budgets
    # (~300 homes/s x 0.2 s); 0 = only the process-wide cap.
    home_max_in_flight: int = 64
    # On SIGTERM an API process fails readiness and keeps serving this long (the load balancer's grace
    # period) before it stops taking connections and finishes what is in flight; 0 = stop at once.
    shutdown_grace_s: float = 0.0
    # Freeze the heap start-up built (gc.freeze) so the cyclic collector's full passes scan only what
    # requests made since: unfrozen, one pass over ~330k start-up objects paused the loop 62 ms.
    # Off in the in-process test suite (hundreds of apps in one process would pile up frozen garbage).
    gc_freeze: bool = True
    request_budget_ms: int = 3000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    # Behind PgBouncer in transaction mode: DATABASE_URL points at PgBouncer, DB_STATEMENT_CACHE_SIZE=0
    # (a prepared statement does not survive the server connection changing under it), and
    # DATABASE_DIRECT_URL points at PostgreSQL itself for what needs a session of its own: the worker's
    # leader lock and LISTEN. Unset: DATABASE_URL serves both.
    database_direct_url: str | None = None
    db_statement_cache_size: int = 100
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_connect_timeout_s: float = 5.0
    db_acquire_timeout_s: float = 2.0
    db_command_timeout_s: float = 5.0

    # REDIS_URL names one node of a Redis Cluster (the client discovers the others).
    redis_cluster: bool = False
    redis_connect_timeout_s: float = 2.0
    redis_socket_timeout_s: float = 2.0
    redis_retries: int = 2
    redis_max_connections: int = 64
    redis_pool_timeout_s: float = 1.0

    # Resilience defaults for every upstream.
    upstream_connect_timeout_s: float = 1.0
    upstream_call_timeout_s: float = 2.0
    upstream_max_in_flight: int = 64
    upstream_retry_budget_ratio: float = 0.1
    upstream_max_retries: int = 2
    breaker_failure_rate: float = 0.5
    breaker_minimum_calls: int = 10
    breaker_window_s: float = 30.0
    breaker_open_s: float = 15.0
    breaker_half_open_probes: int = 3

    item_cache_ttl_s: int = 300
    item_stale_ttl_s: int = 7 * 86400
    item_budget_ms: int = 1500
    # Catalogue mirror: incremental sync period, full resync period, when mirrored guides are
    # labelled stale, page size of the change feed, how often each process checks for a new index.
    catalogue_sync_interval_s: float = 30.0
    catalogue_full_resync_s: float = 86400.0
    catalogue_stale_after_s: float = 900.0
    catalogue_sync_page: int = 1000
    catalogue_sync_call_timeout_s: float = 30.0
    catalogue_index_poll_s: float = 2.0
    # Catalogue search's semantic fallback (bff/catalogue/semantic.py): load the bundled embedding
    # model at start (in the background). False: lexical search only.
    search_semantic: bool = True
    # Failed searches (anonymised counts, bff/catalogue/misses.py): how often each API process adds
    # its counts to PostgreSQL, and how many days are kept.
    search_misses_flush_s: float = 10.0
    search_misses_keep_days: int = 90

    # Identity (auth/). Upstreams: WeChat and the provincial identity provider (sandbox in dev).
    wechat_url: str = "http://127.0.0.1:8100/wechat"
    wechat_appid: str = "wx5a0d5a4d1e0c0001"
    wechat_secret: str = "sandbox-wechat-secret"  # noqa: S105 - the sandbox's, overridden in prod
    idp_url: str = "http://127.0.0.1:8100/idp"
    idp_client_id: str = "sanxiang-bff"
    idp_client_secret: str = "sandbox-idp-secret"  # noqa: S105 - the sandbox's, overridden in prod
    auth_issuer: str = "https://api.sanxiang.gov.cn"
    auth_audience: str = "sanxiang-mobile"
    # Access-token signing keys, each `kid:<base64url PKCS#8 DER>` (EC P-256 -> ES256, Ed25519 -> EdDSA).
    # All are published in the JWKS; only `auth_active_kid` signs. Empty in dev/test: keys are derived
    # from `auth_dev_seed`. Required in prod.
    auth_signing_keys: list[str] = msgspec.field(default_factory=list)
    auth_active_kid: str = ""
    auth_dev_seed: str = "sanxiang-dev-only-not-a-secret"
    auth_access_ttl_s: int = 600
    auth_leeway_s: int = 30
    auth_refresh_grace_s: int = 10
    auth_app_idle_s: int = 14 * 86400
    auth_app_absolute_s: int = 90 * 86400
    auth_miniprogram_idle_s: int = 7 * 86400
    auth_miniprogram_absolute_s: int = 30 * 86400
    auth_kiosk_idle_s: int = 180
    auth_kiosk_absolute_s: int = 900
    auth_kiosk_clock_skew_s: int = 300
    auth_kiosk_face_min_score: float = 0.85
    # The kiosk page's local device bridge (holds the device key, reads the card, signs requests): the
    # page's Content-Security-Policy lets it connect here and nowhere else but the BFF itself.
    kiosk_bridge_url: str = "http://127.0.0.1:8765"
    auth_rate_window_s: int = 60
    # Peers whose X-Forwarded-For is believed (comma-separated IPs or CIDRs; "*" any; "none").
    trusted_proxies: str = "127.0.0.1"
    auth_rate_per_ip: int = 60
    auth_rate_per_subject: int = 10
    auth_lockout_failures: int = 5
    auth_lockout_window_s: int = 900
    auth_lockout_s: int = 900
    # Personal data at rest: `kid:<base64 key>` entries (16 bytes for sm4-gcm, 32 for aes-gcm); the
    # active one encrypts, all decrypt. The blind-index key is separate (HMAC). Required in prod.
    pii_cipher: Literal["aes-gcm", "sm4-gcm"] = "aes-gcm"
    pii_keys: list[str] = msgspec.field(default_factory=list)
    pii_active_key: str = ""
    pii_index_key: str = ""
    # The audit log's chain heads are anchored outside the table every `audit_anchor_interval_s`,
    # signed with this key (base64, 32 bytes; the database never holds it). Empty in dev/test: derived
    # from `auth_dev_seed`. Required in prod.
    audit_anchor_key: str = ""
    audit_anchor_interval_s: float = 60.0

    # Appointments, cases, ratings (issue 5). Upstreams are the sandbox in dev.
    booking_url: str = "http://127.0.0.1:8100/booking"
    cases_url: str = "http://127.0.0.1:8100/cases"
    ratings_url: str = "http://127.0.0.1:8100/ratings"
    # Where the case system delivers its webhooks (our public URL), and the HMAC secret it signs with.
    case_notify_url: str = ""
    case_webhook_secret: str = "sandbox-case-webhook-secret"  # noqa: S105 - the sandbox's; set in prod
    case_webhook_window_s: int = 300
    # Every change feed is re-read this many changes before its cursor (bff/platform/feeds.py).
    feed_lookback: int = 500
    # Per person: new state-changing requests (any route with an Idempotency-Key) per window,
    # shared by every replica (Redis); 0 switches the limit off.
    write_rate_per_user: int = 30
    write_rate_window_s: float = 60.0
    hold_ttl_s: int = 300
    hold_quota: int = 2
    hold_day_quota: int = 2
    # The waitlist: how long a freed seat is held for the first in line, and entries per person.
    waitlist_offer_ttl_s: int = 600
    waitlist_max_per_person: int = 3
    upload_dir: str = ""  # empty: <data_dir>/uploads, never under anything served
    upload_max_bytes: int = 5 * 1_048_576
    upload_quota_count: int = 30
    upload_quota_bytes: int = 50 * 1_048_576
    upload_unattached_ttl_s: int = 86_400

    # Payments (issue 11): WeChat Pay API v3, the sandbox in dev. The merchant's RSA key is a PEM
    # file; empty -> the dev merchant key shipped in adapters/wechatpay (refused in prod).
    wechatpay_url: str = "http://127.0.0.1:8100/wechatpay"
    wechatpay_mchid: str = "1900000109"
    wechatpay_appid: str = "wx5a0d5a4d1e0c0001"
    wechatpay_apiv3_key: str = "sandbox-apiv3-key-0123456789abcd"
    wechatpay_merchant_key_file: str = ""
    wechatpay_merchant_serial: str = "2B8EAE0E698A30745CB1956BFF9FB7584CB125BF"
    wechatpay_notify_window_s: int = 300
    # Our public notification URL given to WeChat (empty: this API's own address).
    payment_notify_url: str = ""
    # An order may be paid for this long (time_expire); the reconciler asks the platform about an
    # order that heard nothing after `payment_check_after_s`, then backs off up to `..._max_s`.
    payment_expire_s: int = 1800
    payment_check_after_s: float = 60.0
    payment_check_max_s: float = 3600.0
    # Delivery of results (issue 11). The courier upstream (the sandbox in dev), where it calls back
    # (our public URL), the HMAC secret it signs callbacks with and the accepted timestamp window;
    # how far behind its cursor the reconciler re-reads the courier's feed; addresses kept per person.
    courier_url: str = "http://127.0.0.1:8100/courier"
    courier_notify_url: str = ""
    courier_webhook_secret: str = "sandbox-courier-secret"  # noqa: S105 - the sandbox's; set in prod
    courier_webhook_window_s: int = 300
    courier_feed_lookback: int = 50
    address_max_per_person: int = 10

    # 12345 tickets (issue 15). The hotline's channel API (the sandbox in dev) and this channel's
    # access key; where it delivers step webhooks (our public URL), the HMAC secret it signs them
    # with and the accepted timestamp window; how far behind its cursor the feed is re-read; the
    # base of the links to our uploads that a ticket's attachments carry.
    hotline_url: str = "http://127.0.0.1:8100/hotline"
    hotline_channel_key: str = "sandbox-hotline-channel-key"
    hotline_notify_url: str = ""
    hotline_webhook_secret: str = "sandbox-hotline-secret"  # noqa: S105 - the sandbox's; set in prod
    hotline_webhook_window_s: int = 300
    hotline_feed_lookback: int = 50
    hotline_attachment_base_url: str = ""

    # Notifications (push/, issue 12). Providers are the sandbox in dev.
    pushgw_url: str = "http://127.0.0.1:8100/pushgw"
    pushgw_app_key: str = "sandbox-pushgw-app"
    pushgw_secret: str = "sandbox-pushgw-secret"  # noqa: S105 - the sandbox's; set in prod
    sms_url: str = "http://127.0.0.1:8100/sms"
    sms_access_key_id: str = "sandbox-sms-key"
    sms_secret: str = "sandbox-sms-secret"  # noqa: S105 - the sandbox's; set in prod
    sms_sign_name: str = "三湘政务"
    # Our public base URL the push gateway posts receipts to (empty: no receipts asked for).
    push_callback_base_url: str = ""
    wechat_miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    push_relay_poll_s: float = 1.0
    push_republish_after_s: float = 30.0
    push_claim_idle_s: float = 15.0
    push_lease_s: float = 30.0
    push_consumer_concurrency: int = 16
    push_sse_heartbeat_s: float = 15.0
    # E-licences (issue 13): the e-licence library (the sandbox in dev), our platform client's id and
    # HMAC secret there; a shown licence's QR payload (亮证) lives `licence_show_ttl_s` (60 s - 10 min)
    # and is signed with `licence_show_key` (derived from `auth_dev_seed` when empty; required in prod).
    elicence_url: str = "http://127.0.0.1:8100/elicence"
    elicence_client_id: str = "sanxiang-bff"
    elicence_secret: str = "sandbox-elicence-secret"  # noqa: S105 - the sandbox's; set in prod
    licence_show_ttl_s: int = 120
    licence_show_key: str = ""
    # Home (我的待办): each resident's sections are kept in Redis `home_stale_s`, the stale copy shown
    # when a domain cannot answer in its budget; the renewals (slow to change) are served from a copy
    # younger than `home_fresh_s` without asking the licence library again.
    home_fresh_s: float = 30.0
    home_stale_s: float = 600.0
    # The worker's own /metrics (push stream length, lag, outcomes) on this port; 0: not served.
    worker_metrics_port: int = 0

    def __post_init__(self) -> None:
        for name in ("database_url", "redis_url", "database_direct_url"):
            value = getattr(self, name)
            if value is not None and not re.match(r"^[a-z+]+://", value):
                raise msgspec.ValidationError(f"Invalid URL - at `$.{name}`")
        for name in ("api_port", "sandbox_port"):
            if not 0 < getattr(self, name) < 65536:
                raise msgspec.ValidationError(f"Port out of range - at `$.{name}`")
        if not 0 < self.breaker_failure_rate <= 1:
            raise msgspec.ValidationError("Must be in (0, 1] - at `$.breaker_failure_rate`")
        if self.max_in_flight < 1 or self.upstream_max_in_flight < 1:
            raise msgspec.ValidationError("Must be >= 1 - at `$.max_in_flight`")
        if self.home_max_in_flight < 0:
            raise msgspec.ValidationError("Must be >= 0 - at `$.home_max_in_flight`")
        if len(self.wechatpay_apiv3_key.encode()) != 32:
            raise msgspec.ValidationError("Must be 32 bytes - at `$.wechatpay_apiv3_key`")
        if not 60 <= self.payment_expire_s <= 90 * 86400:
            raise msgspec.ValidationError("Must be 1 min to 90 days - at `$.payment_expire_s`")
        if not 60 <= self.licence_show_ttl_s <= 600:
            raise msgspec.ValidationError("Must be 1 to 10 minutes - at `$.licence_show_ttl_s`")
        if not 0 < self.auth_access_ttl_s <= 600:
            raise msgspec.ValidationError("Must be in (0, 600] seconds - at `$.auth_access_ttl_s`")
        if self.env == "prod":
            # Dev defaults derive keys from a public seed: never acceptable in production.
            for name in (
                "auth_signing_keys",
                "auth_active_kid",
                "pii_keys",
                "pii_active_key",
                "pii_index_key",
                "audit_anchor_key",
                "cursor_key",
                "licence_show_key",
            ):
                if not getattr(self, name):
                    raise msgspec.ValidationError(f"Required in prod - at `$.{name}`")
            # The upstream secrets' defaults are the sandbox's, published in this repository.
            for name in (
                "wechat_secret",
                "idp_client_secret",
                "case_webhook_secret",
                "wechatpay_apiv3_key",
                "courier_webhook_secret",
                "hotline_channel_key",
                "hotline_webhook_secret",
                "pushgw_app_key",
                "pushgw_secret",
                "sms_access_key_id",
                "sms_secret",
                "elicence_secret",
            ):
                if getattr(self, name).startswith("sandbox-"):
                    raise msgspec.ValidationError(f"Required in prod (not the sandbox's) - at `$.{name}`")
            # Empty means the dev merchant key shipped in this repository.
            if not self.wechatpay_merchant_key_file:
                raise msgspec.ValidationError("Required in prod - at `$.wechatpay_merchant_key_file`")


_FIELDS = set(Settings.__struct_fields__)
_LIST_FIELDS = {"cors_origins", "auth_signing_keys", "pii_keys"}


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build Settings from the environment; the real environment wins over `.env`."""
    source = _read_dotenv(dotenv) if dotenv is not None else {}
    source.update(os.environ if environ is None else environ)
    raw: dict[str, object] = {}
    for name in _FIELDS:
        value = source.get(name.upper())
        if value is None or value == "":
            continue
        if name in _LIST_FIELDS:
            raw[name] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            raw[name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r"\$\.(\w+)", message)
        variable = match.group(1).upper() if match else "?"
        reason = message.split(" - at ", maxsplit=1)[0]
        raise SettingsError(f"configuration error in {variable}: {reason}") from None
