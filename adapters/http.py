"""The resilience layer every upstream client goes through.

One `Upstream` per upstream system: one aiohttp session (made in the app's lifespan), a breaker,
a retry budget and a bulkhead. Each attempt's timeout is the smaller of the per-call timeout and
what is left of the request's deadline; only idempotent calls are retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import msgspec

from adapters import context
from adapters.breaker import CircuitBreaker, State
from adapters.errors import BadUpstreamAnswer, NotSent, UpstreamUnavailable
from adapters.metrics import UPSTREAM_CALLS, UPSTREAM_LATENCY, UPSTREAM_RETRIES
from adapters.retry_budget import RetryBudget

T = TypeVar("T")

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Statuses that say "try again later": they count against the breaker and may be retried.
_TRANSIENT = frozenset({500, 502, 503, 504})
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 0.5


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    connect_timeout: float = 1.0
    call_timeout: float = 2.0
    max_in_flight: int = 64
    max_retries: int = 2
    retry_budget_ratio: float = 0.1
    failure_rate: float = 0.5
    minimum_calls: int = 10
    window_seconds: float = 30.0
    open_seconds: float = 15.0
    half_open_probes: int = 3


class Reply(msgspec.Struct, frozen=True):
    status: int
    headers: Mapping[str, str]
    body: bytes

    def decode(self, type_: type[T], upstream: str) -> T:
        try:
            return msgspec.json.decode(self.body, type=type_)
        except msgspec.DecodeError as exc:
            raise BadUpstreamAnswer(
                f"{upstream} sent a malformed answer", detail_zh=f"{upstream} 返回了格式错误的应答"
            ) from exc


class _Transient(Exception):
    def __init__(self, outcome: str, status: int | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.status = status


class Upstream:
    def __init__(self, name: str, base_url: str, policy: Policy) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.breaker = CircuitBreaker(
            name,
            failure_rate=policy.failure_rate,
            minimum_calls=policy.minimum_calls,
            window_seconds=policy.window_seconds,
            open_seconds=policy.open_seconds,
            half_open_probes=policy.half_open_probes,
        )
        self.budget = RetryBudget(policy.retry_budget_ratio)
        self._bulkhead = asyncio.Semaphore(policy.max_in_flight)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.policy.max_in_flight, limit_per_host=self.policy.max_in_flight, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # No session-wide total: every attempt gets its own from the deadline.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.policy.connect_timeout),
            raise_for_status=False,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one logical call; returns any non-transient reply (2xx, 3xx, 4xx).

        Raises UpstreamUnavailable when the breaker is open, the deadline is spent or the
        upstream kept failing; BadUpstreamAnswer when it kept answering with a server error.
        """
        if self._session is None:
            raise RuntimeError(f"upstream {self.name} used before start()")
        method = method.upper()
        retryable = idempotent if idempotent is not None else method in _IDEMPOTENT
        body = msgspec.json.encode(json) if json is not None else None
        send_headers = {"Accept": "application/json"}
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        elif form is not None:
            # OAuth/OIDC token endpoints take form bodies, not JSON (RFC 6749 section 4.1.3).
            body = urlencode(form).encode()
            send_headers["Content-Type"] = "application/x-www-form-urlencoded"
        rid = context.request_id.get()
        if rid:
            send_headers["X-Request-Id"] = rid
        if headers:
            send_headers.update(headers)

        attempt = 0
        while True:
            if not self.breaker.allow():
                UPSTREAM_CALLS.labels(self.name, "circuit_open").inc()
                unavailable = NotSent if attempt == 0 else UpstreamUnavailable
                raise unavailable(
                    f"{self.name} is unavailable (circuit open)",
                    headers={"Retry-After": str(self.breaker.retry_after())},
                )
            if attempt == 0:
                self.budget.deposit()
            try:
                return await self._attempt(method, path, body, params, send_headers, timeout)
            except _Transient as exc:
                last = exc
            attempt += 1
            left = context.remaining()
            if (
                not retryable
                or attempt > self.policy.max_retries
                or (left is not None and left <= 0.05)
                or not self.budget.try_spend()
            ):
                break
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt))
            if left is not None:
                delay = min(delay, max(0.0, left - 0.05))
            UPSTREAM_RETRIES.labels(self.name).inc()
            await asyncio.sleep(delay)
        if last.status is not None and last.status != 503:
            raise BadUpstreamAnswer(
                f"{self.name} answered {last.status}", detail_zh=f"{self.name} 返回 {last.status}"
            )
        raise UpstreamUnavailable(
            f"{self.name} is unavailable ({last.outcome})",
            detail_zh=f"{self.name} 暂不可用（{last.outcome}）",
        )

    async def _attempt(
        self,
        method: str,
        path: str,
        body: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        timeout: float | None,
    ) -> Reply:
        assert self._session is not None
        limit = timeout if timeout is not None else self.policy.call_timeout
        left = context.remaining()
        if left is not None:
            limit = min(limit, left)
        if limit <= 0:
            # Our budget ran out before sending: no outcome for the window, and a half-open
            # probe must not be "won" by a call the upstream never saw.
            self.breaker.cancel()
            raise _Transient("deadline")
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                async with (
                    self._bulkhead,
                    self._session.request(
                        method, self.base_url + path, data=body, params=params, headers=headers
                    ) as response,
                ):
                    payload = await response.read()
                    status = response.status
                    reply_headers = {k.lower(): v for k, v in response.headers.items()}
        except TimeoutError:
            self._finish("timeout", started, success=False)
            raise _Transient("timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._finish("connection_error", started, success=False)
            raise _Transient("connection_error") from exc
        if status in _TRANSIENT:
            self._finish(f"http_{status}", started, success=False)
            raise _Transient(f"http_{status}", status)
        # A 4xx is the caller's fault and says the upstream is up; any other 5xx (501, 505...) is
        # the upstream's, not worth a retry but a failure all the same.
        self._finish("ok" if status < 400 else f"http_{status}", started, success=status < 500)
        return Reply(status, reply_headers, payload)

    def _finish(self, outcome: str, started: float, *, success: bool) -> None:
        UPSTREAM_LATENCY.labels(self.name).observe(time.monotonic() - started)
        UPSTREAM_CALLS.labels(self.name, outcome).inc()
        self.breaker.record(success)

    def record_malformed(self) -> None:
        """The reply just received (already counted a success) was unusable: count it a failure."""
        UPSTREAM_CALLS.labels(self.name, "malformed").inc()
        self.breaker.reclassify_as_failure()

    def decode(self, reply: Reply, type_: type[T]) -> T:
        try:
            return reply.decode(type_, self.name)
        except BadUpstreamAnswer:
            self.record_malformed()
            raise

    def health(self) -> dict[str, object]:
        snap = self.breaker.snapshot()
        snap["ok"] = self.breaker.state is not State.OPEN
        return snap
