"""Masking of personal data, used for every response field and every log line."""

from __future__ import annotations

import re

# An 18-digit resident ID (the last may be X) and an 11-digit mainland mobile, not inside longer digit runs.
_ID_RE = re.compile(r"(?<![\dA-Za-z])(\d{3})\d{11}(\d{3}[\dXx])(?![\dA-Za-z])")
_PHONE_RE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_id_number(value: str) -> str:
    """`430***********1234`"""
    if len(value) < 8:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str) -> str:
    """`138****5678`"""
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_text(text: str) -> str:
    """Mask every ID number and phone number found anywhere in free text."""
    text = _ID_RE.sub(lambda m: f"{m.group(1)}{'*' * 11}{m.group(2)}", text)
    return _PHONE_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)
