"""长辈版 (elder mode): which display mode a request asks for, and the hint an elder answer carries.

The mode is sent per request in `X-UI-Mode` (the kiosk's switch; the app and the mini-program send
the resident's saved preference, which `/me` returns). Display routes declare the header with
`UI_MODE` so the OpenAPI document lists it and a bad value is a 400 problem, not a guess.
"""

from __future__ import annotations

from typing import Annotated, Literal

from litestar.params import HeaderParameter

from bff.platform.schema import Camel

UiMode = Literal["standard", "elder"]

UI_MODE = HeaderParameter(
    name="X-UI-Mode",
    required=False,
    description=(
        "长辈版: `elder` shapes display answers for older residents (fewer and plainer items, the most "
        "common services first, no secondary sections, a large-type hint); `standard` or absent: normal"
    ),
)
UiModeHeader = Annotated[UiMode | None, UI_MODE]


class DisplayHint(Camel):
    """How an elder answer should be shown (MIIT 适老化: larger type, line spacing ≥ 1.3)."""

    mode: Literal["elder"] = "elder"
    type_scale: float = 1.5
    line_spacing: float = 1.6


ELDER_HINT = DisplayHint()


def is_elder(mode: UiMode | None) -> bool:
    return mode == "elder"
