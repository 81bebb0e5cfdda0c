"""The one rule for every change feed the BFF follows (cases, catalogue; payments, courier and
12345 to come).

An upstream numbers its changes with a sequence taken *before* its transaction commits, so a
change can become visible after one with a higher number has already been read. A cursor that is
"the highest number read" would skip such a late commit for good. So every reader starts each
run `lookback` numbers before its cursor and de-duplicates what it reads again by the change's
own identity (event id, or entry version): a change that commits up to `lookback` numbers late is
still read; one that commits later than that is missed (then found by the next full sync, where
the feed has one). `FEED_LOOKBACK` sets the window (default 500 changes).
"""

from __future__ import annotations


def read_from(cursor: int, lookback: int) -> int:
    """Where a run of a feed reader starts reading: `lookback` changes before its cursor."""
    return max(0, int(cursor) - max(0, int(lookback)))
