"""Idempotency-Key for every state-changing POST (API.md), recorded in PostgreSQL."""

from typing import Annotated

from litestar.params import HeaderParameter

from bff.idempotency.store import IdemContext, IdempotencyStore, PartContext, Recorded

# Declared on every mutating route, so the contract shows it; the store checks its form.
IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        required=True,
        description=(
            "A fresh random value (8-128 printable ASCII characters) per intended action. The same key "
            "with the same body replays the first answer byte for byte (`Idempotent-Replayed: true`); "
            "with another body it is a 422 `idempotency_key_reused`; while the first is still running "
            "a 409 `idempotency_in_progress`. Kept at least 24 h, per user."
        ),
    ),
]

# PUT and DELETE routes that are idempotent by themselves (the same request leaves the same state):
# the header is declared, so clients may send their key as everywhere, and not needed.
OptionalIdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description=(
            "Accepted, not needed: this operation is idempotent by itself (sending it again leaves the "
            "same state), so no answer is recorded for the key."
        ),
    ),
]

__all__ = [
    "IdemContext",
    "IdempotencyKey",
    "IdempotencyStore",
    "OptionalIdempotencyKey",
    "PartContext",
    "Recorded",
]
