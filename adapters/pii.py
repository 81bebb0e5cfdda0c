"""Masking of personal data: ID numbers and phones in free text (log lines) and single values."""

from __future__ import annotations

import re

# An 18-digit resident ID (the last may be X) and an 11-digit mainland mobile, not inside longer
# digit runs. Only digits bound a match: letters, CJK and punctuation around a number do not hide it
# (`身份证号110101199003077774的`, `ID110101…`, `tel13812345678`); identifiers that merely contain such
# a run are kept whole by the log masker's per-field rule, not by these patterns. A Chinese IME
# types full-width digits (０-９, Ｘ), so those are digits too; `\d` is not used because it also
# matches other scripts' digits that no resident ID is written in.
_D = "[0-9\uff10-\uff19]"
_ID_RE = re.compile(rf"(?<!{_D})({_D}{{3}}){_D}{{11}}({_D}{{3}}[0-9\uff10-\uff19Xx\uff38\uff58])(?!{_D})")
_PHONE_RE = re.compile(rf"(?<!{_D})([1\uff11][3-9\uff13-\uff19]{_D}){_D}{{4}}({_D}{{4}})(?!{_D})")


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


def mask_name(value: str) -> str:
    """`张*` / `欧阳**`: the family name (first character) only."""
    value = value.strip()
    return value[:1] + "*" * max(len(value) - 1, 1) if value else ""


def mask_address(value: str) -> str:
    """The first 6 characters (district and road, typically), the house number and rest hidden."""
    value = value.strip()
    keep = min(6, max(len(value) // 2, 1))
    return value[:keep] + "*" * 4 if value else ""
