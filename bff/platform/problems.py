"""RFC 9457 problem documents: the one registry of machine codes and the one renderer.

Every error the API returns is rendered here: our own ProblemErrors, Litestar's HTTP exceptions
(validation, 404, 405, 413 …), what the edge refuses before routing (`render`), and anything
unexpected (a 500 that says nothing of the internals).

Every machine `code` is defined exactly once, with its HTTP status and its title in both
languages, by the domain that answers it (`define(__name__, {...})` in the domain's schemas).
Defining a code twice is an error at import time, so two texts for one code cannot happen; the
OpenAPI document lists, per operation, the codes of the domain it belongs to.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import context
from adapters.errors import ProblemError
from bff.platform.logs import get_logger
from bff.platform.schema import Camel

log = get_logger("bff.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Code(msgspec.Struct, frozen=True):
    status: int
    zh: str
    en: str
    owner: str  # the module that defined it: `bff.<domain>.…`, `bff.platform.…`


CODES: dict[str, Code] = {}


def define(owner: str, codes: dict[str, tuple[int, str, str]]) -> None:
    """Define machine codes: `{code: (status, zh title, en title)}`, each exactly once."""
    for code, (status, zh, en) in codes.items():
        if code in CODES:
            raise ValueError(f"problem code {code!r} is defined twice ({CODES[code].owner} and {owner})")
        CODES[code] = Code(status, zh, en, owner)


def domain_of(module: str) -> str:
    """`bff.appointments.controllers` -> `appointments`; `auth.guards` -> `auth`."""
    parts = module.split(".")
    return parts[1] if parts[0] == "bff" and len(parts) > 1 else parts[0]


define(
    __name__,
    {
        "validation_failed": (400, "请求内容有误", "The request is not valid"),
        "bad_request": (400, "请求有误", "Bad request"),
        "unauthorized": (401, "请先登录", "Authentication required"),
        "forbidden": (403, "无权访问", "Forbidden"),
        "not_found": (404, "未找到", "Not found"),
        "method_not_allowed": (405, "不支持该请求方法", "Method not allowed"),
        "conflict": (409, "操作冲突", "Conflict"),
        "payload_too_large": (413, "请求内容过大", "Request body too large"),
        "rate_limited": (429, "请求过于频繁，请稍后再试", "Too many requests"),
        "internal_error": (500, "系统内部错误", "Internal error"),
        "bad_upstream_answer": (502, "上游系统返回异常", "The upstream system sent a bad answer"),
        "upstream_unavailable": (503, "服务暂时不可用，请稍后再试", "The service is temporarily unavailable"),
        "overloaded": (503, "系统繁忙，请稍后再试", "The service is busy, try again shortly"),
        "not_ready": (503, "服务尚未就绪", "Not ready"),
        "draining": (503, "该实例正在停止，请重试", "This replica is shutting down"),
    },
)

# Litestar's own refusals carry only a status: the code each status stands for.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    502: "bad_upstream_answer",
    503: "upstream_unavailable",
}


class FieldError(Camel):
    field: str | None
    source: str | None
    message: str


class Problem(Camel, omit_defaults=True):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    trace_id: str | None = None
    errors: list[FieldError] | None = None
    extensions: dict[str, Any] | None = None


_encoder = msgspec.json.Encoder()


def english(accept_language: str) -> bool:
    return accept_language.lower().startswith("en")


def render(
    status: int,
    code: str,
    detail: str | None = None,
    *,
    accept_language: str = "",
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The body of a problem document in the request's language."""
    known = (
        CODES.get(code) or CODES.get(_STATUS_CODES.get(status, "internal_error")) or CODES["internal_error"]
    )
    body = Problem(
        type=f"https://sanxiang.gov.cn/problems/{code.replace('_', '-')}",
        title=known.en if english(accept_language) else known.zh,
        status=status,
        code=code,
        detail=detail,
        instance=instance,
        trace_id=context.request_id.get(),
        errors=errors,
        extensions=extra or None,
    )
    return _encoder.encode(body)


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[bytes]:
    body = render(
        status,
        code,
        detail,
        accept_language=request.headers.get("accept-language", ""),
        instance=request.url.path,
        errors=errors,
        extra=extra,
    )
    return Response(content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_errors(exc: ValidationException) -> list[FieldError]:
    found: list[FieldError] = []
    if isinstance(exc.extra, list):
        for entry in exc.extra:
            if isinstance(entry, dict):
                key = entry.get("key")
                source = entry.get("source")
                found.append(
                    FieldError(
                        field=str(key) if key is not None else None,
                        source=str(source) if source is not None else None,
                        message=str(entry.get("message", "")),
                    )
                )
    return found


def handle_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    if exc.status >= 500:
        log.warning("problem", code=exc.code, status=exc.status, detail=exc.detail)
    return problem_response(request, exc.status, exc.code, exc.detail, headers=exc.headers, extra=exc.extra)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if isinstance(exc, ValidationException) or (status == 400 and exc.extra):
        if "'Idempotency-Key'" in (exc.detail or "") and "Missing" in (exc.detail or ""):
            # The header is declared required in the contract; its absence keeps its own code.
            return problem_response(
                request,
                400,
                "idempotency_key_missing",
                "send an Idempotency-Key header (a fresh random value per intended action)",
            )
        errors = _validation_errors(exc) if isinstance(exc, ValidationException) else []
        first = errors[0] if errors else None
        message = exc.detail if first is None or not first.field else f"{first.field}: {first.message}"
        return problem_response(request, 400, "validation_failed", message, errors=errors or None)
    code = _STATUS_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    headers = dict(exc.headers or {})
    return problem_response(
        request, status, code, exc.detail if status < 500 else None, headers=headers or None
    )


def handle_dependency_busy(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Our own database or Redis did not answer in time (pool exhausted, timeout, connection lost):
    the request may succeed if retried shortly, so say that rather than 500."""
    log.warning("dependency_unavailable", error=type(exc).__name__, path=request.url.path)
    return problem_response(request, 503, "overloaded", headers={"Retry-After": "1"})


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled_error", error=type(exc).__name__, path=request.url.path)
    return problem_response(request, 500, "internal_error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ProblemError: handle_problem,
    HTTPException: handle_http_exception,
    TimeoutError: handle_dependency_busy,
    asyncpg.exceptions.TooManyConnectionsError: handle_dependency_busy,
    asyncpg.exceptions.ConnectionDoesNotExistError: handle_dependency_busy,
    RedisConnectionError: handle_dependency_busy,
    RedisTimeoutError: handle_dependency_busy,
    Exception: handle_unexpected,
}
