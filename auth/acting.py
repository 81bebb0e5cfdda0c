"""代办: an agent acting for a principal under a mandate, resolved once per request.

The agent sends `X-Acting-For: <mandate id>` with their own access token. A route honours it only
when it declares the action it needs (`acts_as("read_cases")` in its `opt`); `authenticate` then
asks the resolver (the mandates service, handed in by the composition root: auth may not import
bff) whether that mandate, read from PostgreSQL on this very request, lets this agent do that
action for its principal now. Every refusal is a 403 problem with its own code; a route that does
not declare an action refuses the header outright, so an agent can never reach more than the scope.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

from adapters.errors import ProblemError
from auth.principal import Principal

ACTING_HEADER = "x-acting-for"
Action = Literal["read_cases", "apply", "book", "pay"]
ACTIONS: tuple[Action, ...] = ("read_cases", "apply", "book", "pay")
# The handler `opt` keys: the action a route honours, and the code a route that refuses acting
# answers with instead of `acting_not_allowed` (the mandate routes: passing a mandate on is a chain).
OPT_ACTION = "acting"
OPT_REFUSAL = "acting_refusal"


class Mandated(msgspec.Struct, frozen=True, kw_only=True):
    principal_id: str
    # The catalogue topics the mandate limits every action to (empty: any item), and the item
    # codes filed under them when it was resolved (None: any item).
    categories: tuple[str, ...] = ()
    item_codes: tuple[str, ...] | None = None


class ActingResolver(Protocol):
    async def resolve(self, agent_id: str, mandate_id: str, action: Action) -> Mandated:
        """Who the agent acts for and within which item topics, or a ProblemError (403)."""
        ...


def within_items(principal: Principal) -> list[str] | None:
    """The item codes a list may show this caller (None: every item): an agent whose mandate
    names item topics sees the principal's objects of those items only (only such an agent's
    principal carries item codes)."""
    return None if principal.item_codes is None else list(principal.item_codes)


def check_item(principal: Principal, item_code: str) -> None:
    """An agent whose mandate names item topics acts only on objects of items filed under them:
    applying, booking, paying and reading alike (a 403 that names the topics)."""
    if principal.item_codes is None or item_code in principal.item_codes:
        return
    categories = principal.categories
    raise ProblemError(
        f"the mandate covers items of {', '.join(categories)} only",
        detail_zh=f"该代办授权仅限以下类别的事项：{'、'.join(categories)}",
        status=403,
        code="mandate_out_of_scope",
        extra={"categories": list(categories), "itemCode": item_code},
    )


def acts_as(action: Action) -> dict[str, Any]:
    """A route's `opt`: an agent may call it under a mandate whose scope holds `action`."""
    return {OPT_ACTION: action}


def refused(code: str = "acting_not_allowed") -> ProblemError:
    if code == "mandate_chain":
        return ProblemError(
            "an agent cannot pass a mandate on: manage mandates in your own name only",
            detail_zh="代办人不能转授权：请以本人身份管理授权",
            status=403,
            code="mandate_chain",
        )
    return ProblemError(
        "this operation cannot be done for someone else (X-Acting-For is not honoured here)",
        detail_zh="该操作不能代他人办理",
        status=403,
        code="acting_not_allowed",
    )
