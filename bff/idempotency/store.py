"""Idempotency-Key semantics (IETF draft, as API.md fixes them), shared by every mutating route.

The first request with a key claims it (a row in `bff.idempotency_keys`, state `in_flight`, with a
lease). The route's operation then does its work and, in the SAME transaction as its final local
effect, records the response through `IdemContext.record`: a crash can never leave an effect
without its replayable response, nor a response without its effect. Later requests with the key:

- same fingerprint, done      -> the recorded response, byte for byte;
- different fingerprint       -> 422 `idempotency_key_reused`;
- same fingerprint, in flight -> 409 `idempotency_in_progress` (Retry-After);
- the owner's lease ran out   -> the retry takes the key over and runs the operation again.

Because of that last case every operation must be re-entrant: it derives its ids (and the
request id it sends upstream, so the upstream de-duplicates too) from `IdemContext.request_id`,
which is stable for (subject, key).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import asyncpg.pool
import msgspec
from litestar import Request, Response
from redis.asyncio import Redis

from adapters.errors import ProblemError
from auth import ratelimit
from bff.platform.logs import get_logger
from bff.platform.problems import PROBLEM_MEDIA_TYPE, define, localized, render
from bff.platform.responses import recorded

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


log = get_logger("bff.idempotency")

define(
    __name__,
    {
        "idempotency_key_missing": (400, "缺少幂等键", "An Idempotency-Key header is required"),
        "idempotency_key_reused": (
            422,
            "幂等键已用于另一个请求",
            "This Idempotency-Key was used for a different request",
        ),
        "idempotency_in_progress": (
            409,
            "相同请求正在处理中，请稍后再试",
            "A request with this Idempotency-Key is still being processed",
        ),
    },
)

_KEY = re.compile(r"^[\x21-\x7e]{8,128}$")
# Keys derive the upstream request id; a fixed namespace keeps that stable across replicas.
_NAMESPACE = uuid.UUID("7b0f1c52-93c4-4d5e-a6b1-5358494445ff")
_canonical = msgspec.json.Encoder(order="sorted")


T = TypeVar("T")


@dataclass(frozen=True)
class Recorded(Generic[T]):
    """A response (the encoding of a `T`) that was written to the idempotency record; only
    `IdemContext.finish` makes one, so an operation cannot answer without having recorded."""

    status: int
    media_type: str
    body: bytes


class IdemContext:
    def __init__(self, subject: str, key: str, status: int = 200) -> None:
        self.subject = subject
        self.key = key
        # The route's success status: the service decides what happened, the route how it is said.
        self.status = status
        # Stable for (subject, key): ids derived from it make a re-run find its own earlier work.
        self.request_id = uuid.uuid5(_NAMESPACE, f"{subject}\x00{key}")

    def derive(self, purpose: str) -> uuid.UUID:
        """A second stable id for the same request (e.g. the new appointment of a reschedule)."""
        return uuid.uuid5(self.request_id, purpose)

    async def finish(self, conn: Conn, result: T) -> Recorded[T]:
        """Record `result` as the answer to this key; call it inside the transaction that makes
        the operation's final local effect."""
        return await self._record(conn, self.status, msgspec.json.encode(result))

    async def _record(
        self, conn: Conn, status: int, body: bytes, *, media_type: str = "application/json"
    ) -> Recorded[Any]:
        done = await conn.fetchval(
            """
            UPDATE bff.idempotency_keys
               SET state = 'done', response_status = $3, response_media_type = $4,
                   response_body = $5, completed_at = now()
             WHERE subject = $1 AND key = $2 AND state = 'in_flight'
            RETURNING 1
            """,
            self.subject,
            self.key,
            status,
            media_type,
            body,
        )
        if done is None:
            # Our lease ran out and another request took the key over: roll our effect back.
            raise ProblemError(
                "the request took too long and was taken over by a retry",
                status=409,
                code="idempotency_in_progress",
                headers={"Retry-After": "1"},
                detail_zh="请求耗时过长，已由重试接手",
            )
        return Recorded(status=status, media_type=media_type, body=body)


class PartContext(IdemContext):
    """One part of a keyed request, done by an operation written for a whole request (a member
    case of a life-event application, done by the case domain's `apply`). The part's request id is
    given (derived from the whole's, so a re-run finds the part's earlier work), and its answer is
    handed to `on_finish` in the part's final transaction instead of being written to the key's
    record: the whole writes that once, for all its parts, when they are done."""

    def __init__(
        self,
        whole: IdemContext,
        request_id: uuid.UUID,
        on_finish: Callable[[Conn], Awaitable[None]],
        status: int = 201,
    ) -> None:
        super().__init__(whole.subject, whole.key, status)
        self.request_id = request_id
        self._on_finish = on_finish

    async def finish(self, conn: Conn, result: T) -> Recorded[T]:
        await self._on_finish(conn)
        return Recorded(status=self.status, media_type="application/json", body=msgspec.json.encode(result))


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    try:
        canonical = _canonical.encode(msgspec.json.decode(body)) if body else b""
    except msgspec.DecodeError:
        canonical = body  # not JSON (an upload): the bytes themselves
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


Operation = Callable[[IdemContext], Awaitable[Recorded[T]]]


class IdempotencyStore:
    """Also the one place every state-changing request of a person passes: the per-person write
    limit (`write_rate` new writes per `write_window_s`, shared by every replica through one Redis
    script, auth/ratelimit.py) is counted here, for a new key only: replays cost nothing."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lease_seconds: float = 30.0,
        keep_hours: int = 48,
        redis: Redis | None = None,
        write_rate: int = 0,
        write_window_s: float = 60.0,
    ) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.keep_hours = keep_hours
        self.redis = redis
        self.write_rate = write_rate
        self.write_window_s = write_window_s

    async def _limit(self, subject: str, key: str) -> None:
        if self.redis is None or self.write_rate <= 0:
            return
        allowed, retry_after = await ratelimit.hit(
            self.redis, f"write:{subject}", self.write_rate, self.write_window_s
        )
        if not allowed:
            await self._release(subject, key)
            raise ProblemError(
                f"at most {self.write_rate} changes per {self.write_window_s:g} s; try again shortly",
                status=429,
                code="rate_limited",
                headers={"Retry-After": str(retry_after)},
                extra={"retryAfter": retry_after},
                detail_zh=f"每 {self.write_window_s:g} 秒最多 {self.write_rate} 次修改，请稍后再试",
            )

    async def run(
        self, request: Request[Any, Any, Any], subject: str, operation: Operation[T]
    ) -> Response[T]:
        """Run `operation` once for this request's Idempotency-Key; the answer, first or replayed."""
        key = request.headers.get("idempotency-key")
        if key is None:
            raise ProblemError(
                "send an Idempotency-Key header (a fresh random value per intended action)",
                status=400,
                code="idempotency_key_missing",
                detail_zh="请发送 Idempotency-Key 请求头（每个操作一个新的随机值）",
            )
        if not _KEY.match(key):
            raise ProblemError(
                "Idempotency-Key must be 8 to 128 printable ASCII characters",
                status=400,
                code="validation_failed",
                detail_zh="Idempotency-Key 须为 8 到 128 个可打印 ASCII 字符",
            )
        body = await request.body()
        print_ = fingerprint(request.method, request.url.path, body)
        existing = await self._claim(subject, key, print_)
        if existing is not None:
            return _replay(existing)
        await self._limit(subject, key)
        ctx = IdemContext(subject, key, request.route_handler.status_code or 200)
        try:
            answer = await operation(ctx)
        except ProblemError as exc:
            if exc.status >= 500 or exc.code == "idempotency_in_progress":
                await self._release(subject, key)
                raise
            # A refusal changed nothing; it is the answer to this key from now on (in the language
            # it was first given in: a replay is byte for byte).
            language = request.headers.get("accept-language", "")
            problem = render(
                exc.status,
                exc.code,
                localized(exc.detail, exc.detail_zh, language),
                accept_language=language,
                instance=request.url.path,
                extra=exc.extra,
            )
            async with self.pool.acquire() as conn, conn.transaction():
                await ctx._record(conn, exc.status, problem, media_type=PROBLEM_MEDIA_TYPE)
            return recorded(
                problem, status=exc.status, media_type=PROBLEM_MEDIA_TYPE, headers=exc.headers or None
            )
        except BaseException:
            await self._release(subject, key)
            raise
        return recorded(answer.body, status=answer.status, media_type=answer.media_type)

    async def expire(self, batch: int = 5000) -> int:
        """The worker's job: drop records past their keep time (>= 24 h), a batch at a time."""
        result = await self.pool.execute(
            """
            DELETE FROM bff.idempotency_keys
            WHERE ctid IN (SELECT ctid FROM bff.idempotency_keys WHERE expires_at < now() LIMIT $1)
            """,
            batch,
        )
        return int(result.split()[-1])

    async def _claim(self, subject: str, key: str, print_: bytes) -> asyncpg.Record | None:
        """None when this request now owns the key; otherwise the row that answers it."""
        for _ in range(3):
            async with self.pool.acquire() as conn:
                claimed = await conn.fetchval(
                    """
                    INSERT INTO bff.idempotency_keys AS k
                        (subject, key, fingerprint, state, lease_until, expires_at)
                    VALUES ($1, $2, $3, 'in_flight', now() + make_interval(secs => $4),
                            now() + make_interval(hours => $5))
                    ON CONFLICT (subject, key) DO UPDATE
                       SET fingerprint = EXCLUDED.fingerprint, state = 'in_flight',
                           lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at,
                           response_status = NULL, response_media_type = NULL, response_body = NULL,
                           created_at = now(), completed_at = NULL
                     WHERE k.expires_at < now()
                        OR (k.state = 'in_flight' AND k.lease_until < now()
                            AND k.fingerprint = EXCLUDED.fingerprint)
                    RETURNING 1
                    """,
                    subject,
                    key,
                    print_,
                    self.lease_seconds,
                    self.keep_hours,
                )
                if claimed is not None:
                    return None
                row = await conn.fetchrow(
                    """
                    SELECT fingerprint, state, response_status, response_media_type, response_body
                      FROM bff.idempotency_keys WHERE subject = $1 AND key = $2
                    """,
                    subject,
                    key,
                )
            if row is None:
                continue  # released between our two statements: try to claim again
            if bytes(row["fingerprint"]) != print_:
                raise ProblemError(
                    "this Idempotency-Key was already used with a different request",
                    status=422,
                    code="idempotency_key_reused",
                    detail_zh="该 Idempotency-Key 已用于另一个请求",
                )
            if row["state"] == "done":
                return row
            raise ProblemError(
                "a request with this Idempotency-Key is still being processed",
                status=409,
                code="idempotency_in_progress",
                headers={"Retry-After": "1"},
                detail_zh="相同 Idempotency-Key 的请求仍在处理中",
            )
        raise ProblemError(
            "a request with this Idempotency-Key is still being processed",
            status=409,
            code="idempotency_in_progress",
            headers={"Retry-After": "1"},
            detail_zh="相同 Idempotency-Key 的请求仍在处理中",
        )

    async def _release(self, subject: str, key: str) -> None:
        """The operation failed without an answer to keep: let a retry run it again."""
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM bff.idempotency_keys WHERE subject = $1 AND key = $2 AND state = 'in_flight'",
                    subject,
                    key,
                )
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            # The lease runs out on its own; a retry then takes the key over.
            log.warning("idempotency_release_failed", error=type(exc).__name__)


def _replay(row: asyncpg.Record) -> Response[Any]:
    return recorded(
        bytes(row["response_body"]),
        status=int(row["response_status"]),
        media_type=str(row["response_media_type"]),
        headers={"Idempotent-Replayed": "true"},
    )
