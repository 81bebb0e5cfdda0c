"""The log masker works by field: identifiers pass whole, everything else has its ID numbers and
phones masked, wherever they sit in the text (CJK around them included)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import context
from adapters.pii import mask_text
from bff.platform.logs import IDENTIFIER_KEYS, AccessLog, _mask_processor, get_logger
from tests.conftest import AppFactory

ID_NUMBER = "110101199003077774"
ID_MASKED = "110***********7774"
PHONE = "13812345678"
PHONE_MASKED = "138****5678"
RID = "13812345678abcdef"  # the id from the issue: contains a mobile-shaped run


def process(**fields: Any) -> dict[str, Any]:
    return dict(_mask_processor(None, "info", dict(fields)))


# --- the per-field rule -----------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(IDENTIFIER_KEYS))
def test_identifier_fields_pass_unchanged(key: str) -> None:
    for value in (RID, f"trace-{ID_NUMBER}", f"/api/v1/cases/{PHONE}", f"rq:{PHONE}:{ID_NUMBER}"):
        assert process(**{key: value})[key] == value


@pytest.mark.parametrize(
    "key",
    [
        "event",
        "detail",
        "message",
        "error",
        "phone",
        "id_number",
        "name",
        "address",
        "path",
        "key",
        "some_new_field",
    ],
)
def test_free_text_personal_and_unknown_fields_are_masked(key: str) -> None:
    out = process(**{key: f"张三 {PHONE} 住址 {ID_NUMBER}"})[key]
    assert out == f"张三 {PHONE_MASKED} 住址 {ID_MASKED}"


def test_the_issue_example_request_id_is_logged_whole() -> None:
    out = process(event="request", request_id=RID, route="/api/v1/me", method="GET", status=200)
    assert out == {
        "event": "request",
        "request_id": RID,
        "route": "/api/v1/me",
        "method": "GET",
        "status": 200,
    }


def test_numbers_in_personal_fields_are_masked_too() -> None:
    out = process(phone=int(PHONE), attempts=3, status=13812345678)
    assert out == {"phone": PHONE_MASKED, "attempts": 3, "status": 13812345678}


def test_nested_values_follow_the_same_rule() -> None:
    out = process(
        extra={"request_id": RID, "phone": PHONE, "inner": {"trace_id": RID, "note": f"call {PHONE}"}},
        items=[PHONE, {"code": PHONE}],
    )
    assert out == {
        "extra": {
            "request_id": RID,
            "phone": PHONE_MASKED,
            "inner": {"trace_id": RID, "note": f"call {PHONE_MASKED}"},
        },
        "items": [PHONE_MASKED, {"code": PHONE}],
    }


def test_an_identifier_key_holding_a_container_is_still_masked_inside() -> None:
    # The allow-list vouches for a scalar id, not for whatever structure is put under the name.
    out = process(request_id={"phone": PHONE}, code=[PHONE])
    assert out == {"request_id": {"phone": PHONE_MASKED}, "code": [PHONE_MASKED]}


# --- the patterns, inside Chinese text and next to letters --------------------------------------

CJK_CASES = [
    (f"身份证号{ID_NUMBER}的申请", f"身份证号{ID_MASKED}的申请"),
    (f"手机{PHONE}已绑定", f"手机{PHONE_MASKED}已绑定"),
    (f"（{PHONE}）", f"（{PHONE_MASKED}）"),
    (f"证件：{ID_NUMBER[:17]}X，电话：{PHONE}。", f"证件：{ID_MASKED[:17]}X，电话：{PHONE_MASKED}。"),
    (f"ID{ID_NUMBER}", f"ID{ID_MASKED}"),
    (f"tel{PHONE}ext", f"tel{PHONE_MASKED}ext"),
    # Full-width digits, as a Chinese IME types them.
    ("电话１３８１２３４５６７８", "电话１３８****５６７８"),
    ("身份证１１０１０１１９９００３０７７７７Ｘ", "身份证１１０***********７７７Ｘ"),
]


@pytest.mark.parametrize(("text", "expected"), CJK_CASES)
def test_numbers_inside_chinese_text_are_masked(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "受理编号2024010112345678901号",  # 19 digits: a case number, not an ID
        "订单号138123456789已支付",  # 12 digits: not a phone
        "金额12345678元",
        "窗口10号，下午3点",
    ],
)
def test_longer_or_shorter_digit_runs_in_chinese_text_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


_CJK = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=4)
_AROUND = st.one_of(_CJK, st.text(alphabet="abcXYZ:-_ ，。（）", max_size=4))
_PERSONAL = st.sampled_from([ID_NUMBER, PHONE, "13912340000", "44030119851231002X"])


@settings(max_examples=200, deadline=None)
@given(before=_AROUND, secret=_PERSONAL, after=_AROUND, key=st.sampled_from(["detail", "name", "x"]))
def test_no_personal_number_survives_in_a_masked_field(
    before: str, secret: str, after: str, key: str
) -> None:
    out = process(**{key: before + secret + after})[key]
    assert secret not in out
    assert out.startswith(before) and out.endswith(after)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=40), key=st.sampled_from(sorted(IDENTIFIER_KEYS)))
def test_identifier_fields_are_never_rewritten(value: str, key: str) -> None:
    assert process(**{key: value})[key] == value


# --- through the real pipeline: the app's access line and a logger call ------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_the_access_line_keeps_the_callers_request_id(make_client: AppFactory) -> None:
    client = await make_client()
    root = logging.getLogger()
    capture = _Capture()
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    try:
        response = await client.get("/api/v1/no-such-route", headers={"X-Request-Id": RID})
        get_logger("bff.test").warning("problem", code="not_found", detail=f"no case {ID_NUMBER} for {PHONE}")
    finally:
        root.removeHandler(capture)
    assert response.headers["x-request-id"] == RID
    records = [json.loads(line) for line in capture.lines]
    access = [r for r in records if r.get("event") == "request"]
    assert access and access[-1]["request_id"] == RID, capture.lines
    problem = [r for r in records if r.get("event") == "problem"][-1]
    assert problem["detail"] == f"no case {ID_MASKED} for {PHONE_MASKED}"
    assert not any(ID_NUMBER in line or PHONE in line.replace(RID, "") for line in capture.lines)


async def test_the_access_line_is_the_line_structlog_wrote(make_client: AppFactory) -> None:
    """`AccessLog` skips structlog's chain, not its output: same keys in the same order, same
    values, masking included (also of anything bound to the context), to the root's handlers."""
    import structlog

    await make_client()  # logging configured as the app configures it
    root = logging.getLogger()
    capture = _Capture()
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    token = context.request_id.set(RID)
    fields = {"method": "GET", "route": "/api/v1/cases/{case_id:str}", "status": 404, "duration_ms": 1.25}
    try:
        for bound in ({}, {"caller": f"张三 {PHONE}", "attempt": 2}):
            structlog.contextvars.bind_contextvars(**bound)
            try:
                get_logger("bff.access").info("request", **fields)
                AccessLog("bff.access").info("request", **fields)
            finally:
                structlog.contextvars.clear_contextvars()
    finally:
        context.request_id.reset(token)
        root.removeHandler(capture)
    lines = [json.loads(line) for line in capture.lines]
    assert len(lines) == 4
    for old, new in (lines[0:2], lines[2:4]):
        assert old.pop("timestamp")[:16] == new.pop("timestamp")[:16]
        assert list(old.items()) == list(new.items())
    assert lines[0] == {
        **fields,
        "event": "request",
        "level": "info",
        "logger": "bff.access",
        "request_id": RID,
    }
    assert lines[3]["caller"] == f"张三 {PHONE_MASKED}" and lines[3]["attempt"] == 2
    assert not any(PHONE in line.replace(RID, "") for line in capture.lines)


async def test_the_access_line_respects_the_level(make_client: AppFactory) -> None:
    await make_client(log_level="WARNING")
    root = logging.getLogger()
    capture = _Capture()
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    try:
        AccessLog("bff.access").info("request", method="GET", route="/x", status=200, duration_ms=1.0)
    finally:
        root.removeHandler(capture)
    assert capture.lines == []
