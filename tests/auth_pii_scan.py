"""The scan behind the suite's personal-data check: unmasked ID numbers (any 18-digit value with a
valid GB 11643 check digit, and every one the helpers created), phones the helpers created, and the
WeChat session_keys the sandbox handed out."""

from __future__ import annotations

import re

from tests.auth_helpers import KNOWN_PII, KNOWN_SECRETS

_ID = re.compile(r"(?<![0-9A-Za-z])(\d{17}[0-9Xx])(?![0-9A-Za-z])")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _valid_id(value: str) -> bool:
    month, day = int(value[10:12]), int(value[12:14])
    if not (1 <= month <= 12 and 1 <= day <= 31 and value[6:8] in ("19", "20")):
        return False
    check = "10X98765432"[sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True)) % 11]
    return check == value[17].upper()


def leaks(texts: list[str], *, by_pattern: bool = False, field_names: bool = True) -> list[str]:
    """Known values always; with `by_pattern`, also anything shaped like a valid ID number (used on
    identity responses, where no other 18-digit value belongs; elsewhere a case number could match)."""
    secrets = {s for s in KNOWN_PII | KNOWN_SECRETS if s}
    found: list[str] = []
    for text in texts:
        if by_pattern:
            for match in _ID.finditer(text):
                if _valid_id(match.group(1)):
                    found.append(f"ID number {match.group(1)[:3]}… in {text[:120]!r}")
        if field_names and ("session_key" in text or "sessionKey" in text):
            found.append(f"session_key field in {text[:120]!r}")
        for secret in secrets:
            if secret in text:
                found.append(f"{secret[:3]}… in {text[:120]!r}")
    return found
