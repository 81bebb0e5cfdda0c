"""The one inspection of what a client sends, before any route sees it (called by the edge).

Every JSON body, every query string and every path goes through here, whatever route it is for,
so a route added tomorrow is protected the same way:

- the URL (path + query) is at most `max_url_bytes` (414 otherwise);
- the path and the query string are strict UTF-8 with no control characters;
- a request body is `application/json` (or `application/*+json`) unless the route takes raw bytes
  (uploads) — a JSON body sent as `text/plain` is a 415, it must not act;
- a JSON body is strict UTF-8, valid JSON, nested at most `MAX_DEPTH` deep, and none of its
  strings (keys or values) carries a control character (NUL included; tab, CR and LF are text)
  or a lone surrogate — PostgreSQL cannot store either, and no resident types them.

Each refusal is an `InputRefused` carrying the problem's status, code, detail and the JSON path
of the offending field (`$.form.contactName`, `query.q`), which the edge renders with the one
renderer. The decoded value is thrown away: Litestar decodes the bytes again into the route's
typed struct (msgspec; ~1 ms per 100 KB), which keeps one schema per route.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec

from bff.platform.problems import define

define(
    __name__,
    {
        "uri_too_long": (414, "请求地址过长", "The request URL is too long"),
        "unsupported_media_type": (415, "请求内容类型不受支持", "Unsupported content type"),
    },
)

MAX_DEPTH = 32
# C0 controls except tab, LF and CR; DEL; C1 controls; lone surrogates (never valid text).
_BODY_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# In a URL not even tab, CR or LF has a place.
_URL_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json\s*(?:;|$)", re.IGNORECASE)


# The Chinese detail of each refusal (`{field}` and `{limit}` filled in); English is the detail.
_ZH = {
    "control": "{field}：不能包含控制字符",
    "utf8": "{field}：不是有效的 UTF-8 编码",
    "depth": "请求内容嵌套超过 {limit} 层",
    "json": "请求内容不是有效的 JSON",
    "url": "请求地址超过 {limit} 字节",
    "type": "请以 application/json 发送请求内容",
    "size": "请求内容超过 {limit} 字节",
}


class InputRefused(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        *,
        zh: str = "",
        limit: int = 0,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.detail_zh = _ZH[zh].format(field=field or "", limit=limit) if zh else None


def check_url(raw_path: bytes, query: bytes, max_url_bytes: int) -> None:
    if len(raw_path) + len(query) > max_url_bytes:
        raise InputRefused(
            414, "uri_too_long", f"the URL is over {max_url_bytes} bytes", zh="url", limit=max_url_bytes
        )
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise InputRefused(400, "validation_failed", "path: not UTF-8", "path", zh="utf8") from None
    if _URL_BAD.search(path):
        raise InputRefused(
            400, "validation_failed", "path: control characters are not allowed", "path", zh="control"
        )
    if not query:
        return
    for pair in query.split(b"&"):
        name_raw, _, value_raw = pair.partition(b"=")
        try:
            name = unquote_to_bytes(name_raw.replace(b"+", b" ")).decode("utf-8")
            value = unquote_to_bytes(value_raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise InputRefused(400, "validation_failed", "query: not UTF-8", "query", zh="utf8") from None
        field = f"query.{name}" if not _URL_BAD.search(name) else "query"
        if _URL_BAD.search(name) or _URL_BAD.search(value):
            raise InputRefused(
                400, "validation_failed", f"{field}: control characters are not allowed", field, zh="control"
            )


def is_json(content_type: str) -> bool:
    return bool(_JSON_TYPE.match(content_type.strip()))


def check_content_type(content_type: str) -> None:
    if not is_json(content_type):
        shown = content_type.split(";", 1)[0].strip()[:60] or "none"
        raise InputRefused(
            415, "unsupported_media_type", f"send the body as application/json (it was {shown})", zh="type"
        )


def check_json(body: bytes) -> None:
    """Refuse a body no route could use safely; say which field when one is at fault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRefused(
            400, "validation_failed", f"the body is not UTF-8 (byte {exc.start})", "$", zh="utf8"
        ) from None
    try:
        value = msgspec.json.decode(text)
    except RecursionError:
        raise InputRefused(
            400,
            "validation_failed",
            f"the body is nested deeper than {MAX_DEPTH} levels",
            "$",
            zh="depth",
            limit=MAX_DEPTH,
        ) from None
    except msgspec.DecodeError as exc:
        raise InputRefused(400, "validation_failed", f"the body is not JSON: {exc}", "$", zh="json") from None
    _walk(value)


def _walk(value: Any) -> None:
    # Iterative: a depth the interpreter could not recurse into must still be a 400.
    # `depth` counts the arrays and objects around a value, itself included.
    stack: list[tuple[Any, str, int]] = [(value, "$", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH and isinstance(node, dict | list):
            raise InputRefused(
                400,
                "validation_failed",
                f"the body is nested deeper than {MAX_DEPTH} levels",
                path,
                zh="depth",
                limit=MAX_DEPTH,
            )
        if isinstance(node, str):
            if _BODY_BAD.search(node):
                raise InputRefused(
                    400,
                    "validation_failed",
                    f"{path}: control characters are not allowed",
                    path,
                    zh="control",
                )
        elif isinstance(node, dict):
            for key, item in node.items():
                child = f"{path}.{key}" if not _BODY_BAD.search(key) else path
                if _BODY_BAD.search(key):
                    raise InputRefused(
                        400,
                        "validation_failed",
                        f"{path}: control characters in a field name",
                        path,
                        zh="control",
                    )
                stack.append((item, child, depth + 1))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                stack.append((item, f"{path}[{index}]", depth + 1))
