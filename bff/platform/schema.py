"""The one base of every API struct: camelCase on the wire; request bodies refuse unknown fields.

Options given to a subclass (`omit_defaults`, `frozen`, …) add to these; `rename` is inherited.
"""

from __future__ import annotations

import msgspec


class Camel(msgspec.Struct, rename="camel"):
    """A response (or any API) struct."""


class CamelIn(Camel, forbid_unknown_fields=True):
    """A request body: an unknown field is a 400 that names it."""
