"""A retry budget: retries may add at most `ratio` extra calls on top of first attempts.

Every first attempt deposits `ratio` of a token (up to `cap`); a retry spends one whole token.
So over any stretch of time retries <= ratio * first attempts, and a struggling upstream is
never hit with a retry storm.
"""

from __future__ import annotations


class RetryBudget:
    def __init__(self, ratio: float, cap: float = 10.0) -> None:
        self.ratio = ratio
        self.cap = cap
        self._tokens = 0.0

    def deposit(self) -> None:
        self._tokens = min(self.cap, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
