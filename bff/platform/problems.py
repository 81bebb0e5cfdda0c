"""RFC 9457 problem documents for every error path, with stable machine codes.

Every error the API returns goes through here: our own ProblemErrors, Litestar's HTTP exceptions
(validation, 404, 405, 413 …) and anything unexpected (a 500 that says nothing of the internals).
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

log = get_logger("bff.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"

# code -> (zh title, en title). Stable: clients switch on `code`, people read `title`.
TITLES: dict[str, tuple[str, str]] = {
    "validation_failed": ("请求内容有误", "The request is not valid"),
    "bad_request": ("请求有误", "Bad request"),
    "not_found": ("未找到", "Not found"),
    "method_not_allowed": ("不支持该请求方法", "Method not allowed"),
    "payload_too_large": ("请求内容过大", "Request body too large"),
    "rate_limited": ("请求过于频繁，请稍后再试", "Too many requests"),
    "unauthorized": ("请先登录", "Authentication required"),
    "forbidden": ("无权访问", "Forbidden"),
    "conflict": ("操作冲突", "Conflict"),
    "bad_upstream_answer": ("上游系统返回异常", "The upstream system sent a bad answer"),
    "upstream_unavailable": ("服务暂时不可用，请稍后再试", "The service is temporarily unavailable"),
    "overloaded": ("系统繁忙，请稍后再试", "The service is busy, try again shortly"),
    "internal_error": ("系统内部错误", "Internal error"),
    "item_not_found": ("未找到该事项", "No such service item"),
}

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


def register_titles(titles: dict[str, tuple[str, str]]) -> None:
    """Domains add their own codes' titles at import time."""
    TITLES.update(titles)


class Problem(msgspec.Struct, omit_defaults=True, rename="camel"):
    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    trace_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    extensions: dict[str, Any] | None = None


def _language(request: Request[Any, Any, Any]) -> int:
    accept = request.headers.get("accept-language", "")
    return 1 if accept.lower().startswith("en") else 0


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[bytes]:
    titles = TITLES.get(code) or TITLES.get(_STATUS_CODES.get(status, "internal_error"), ("错误", "Error"))
    body = Problem(
        type=f"https://sanxiang.gov.cn/problems/{code.replace('_', '-')}",
        title=titles[_language(request)],
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path,
        trace_id=context.request_id.get(),
        errors=errors,
        extensions=extra or None,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(exc.extra, list):
        for entry in exc.extra:
            if isinstance(entry, dict):
                found.append(
                    {
                        "field": entry.get("key"),
                        "source": entry.get("source"),
                        "message": str(entry.get("message", "")),
                    }
                )
    return found


def handle_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    if exc.status >= 500:
        log.warning("problem", code=exc.code, status=exc.status, detail=exc.detail)
    return problem_response(request, exc.status, exc.code, exc.detail, headers=exc.headers, extra=exc.extra)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if isinstance(exc, ValidationException) or (status == 400 and exc.extra):
        errors = _validation_errors(exc) if isinstance(exc, ValidationException) else []
        field = errors[0]["field"] if errors else None
        message = exc.detail if not field else f"{field}: {errors[0]['message']}"
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
