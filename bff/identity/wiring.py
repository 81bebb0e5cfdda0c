"""Build the identity runtime from settings (the only place auth meets Settings)."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from adapters.http import Policy, Upstream
from adapters.idp.client import IdpClient
from adapters.wechat.client import WeChatClient
from adapters.wechat.token import AccessTokenCache
from auth import crypto, keys
from auth.runtime import AuthConfig, AuthRuntime
from auth.sessions import Lifetimes
from auth.tokens import TokenService
from bff.platform.settings import Settings


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


def upstreams(settings: Settings, policy: Policy) -> dict[str, Upstream]:
    return {
        "wechat": Upstream("wechat", settings.wechat_url, policy),
        "idp": Upstream("idp", settings.idp_url, policy),
    }


def build_runtime(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, wechat: Upstream, idp: Upstream
) -> AuthRuntime:
    wechat_client = WeChatClient(wechat, settings.wechat_appid, settings.wechat_secret)
    wechat_client.use_token_cache(
        AccessTokenCache(redis, settings.wechat_appid, wechat_client.fetch_stable_token)
    )
    return AuthRuntime(
        pool=pool,
        redis=redis,
        tokens=token_service(settings),
        crypto=pii_crypto(settings),
        wechat=wechat_client,
        idp=IdpClient(
            idp,
            client_id=settings.idp_client_id,
            client_secret=settings.idp_client_secret,
            issuer=settings.idp_url,
        ),
        config=auth_config(settings),
    )
