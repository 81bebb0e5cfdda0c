"""Errors that carry an RFC 9457 problem: raised anywhere below `bff`, rendered by `bff`.

They live here because `auth`, `push` and the adapters raise them and may not import `bff`.
"""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """An error the client is told about: HTTP status, a stable machine `code` and a detail."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        detail_zh: str | None = None,
    ) -> None:
        super().__init__(detail or code or self.code)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.detail = detail
        # The detail in Chinese, shown to zh-CN requests (the default language); `detail` (English)
        # is shown to `en` requests and wherever no Chinese text was given.
        self.detail_zh = detail_zh
        self.headers = headers or {}
        self.extra = extra or {}


class UpstreamUnavailable(ProblemError):
    """The upstream could not be reached in time, or its breaker is open."""

    status = 503
    code = "upstream_unavailable"


class NotSent(UpstreamUnavailable):
    """Nothing was sent (the breaker is open): the upstream certainly did not act on this call."""


class BadUpstreamAnswer(ProblemError):
    """The upstream answered, but with something we cannot use."""

    status = 502
    code = "bad_upstream_answer"
