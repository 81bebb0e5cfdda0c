"""Idempotency-Key for every state-changing POST (API.md), recorded in PostgreSQL."""

from bff.idempotency.store import IdemContext, IdempotencyStore, Recorded

__all__ = ["IdemContext", "IdempotencyStore", "Recorded"]
