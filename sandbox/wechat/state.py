"""In-process knobs of the WeChat simulation (one sandbox process serves a test session)."""

from __future__ import annotations

import time
from collections import defaultdict, deque

# Registered mini-programs: appid -> secret.
APPS = {"wx5a0d5a4d1e0c0001": "sandbox-wechat-secret"}


class WeChatState:
    def __init__(self) -> None:
        self.login_per_minute = 100  # WeChat's documented per-user limit for jscode2session
        self._calls: dict[str, deque[float]] = defaultdict(deque)

    def over_limit(self, openid: str) -> bool:
        now = time.monotonic()
        calls = self._calls[openid]
        while calls and calls[0] < now - 60:
            calls.popleft()
        if len(calls) >= self.login_per_minute:
            return True
        calls.append(now)
        return False


STATE = WeChatState()
