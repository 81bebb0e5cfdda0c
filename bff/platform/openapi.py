"""The OpenAPI document as the contract client generators read: what every operation can answer.

Litestar documents each route's success type from its return annotation and its parameters from
its signature. What it cannot know is added here, once, from the app itself (never a hand list):

- every error response as `application/problem+json` with the one `Problem` schema, and the
  machine codes the operation's domain can answer for that status (from the code registry);
- the security requirement of every operation that needs a login (bearer access tokens; kiosk
  routes also the device-signature headers);
- the request body of routes that take raw bytes (uploads);
- for the callbacks upstream systems send us, their signature headers (required) and the
  `x-signed-callback` extension naming the sender, so client generators and readers know the
  operation is not one the app calls (and takes no Idempotency-Key: the sender's event id is the key);
- OpenAPI links from an answer to the operations that take what it names (`linked`): a booking's
  id to reading, cancelling and moving it; client generators and the stateful tests follow them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from auth import kiosk
from auth.acting import OPT_ACTION
from auth.device import kiosk_signed, kiosk_signed_if_sent
from auth.guards import require_principal_if_declared
from bff.platform.problems import CODES, PROBLEM_MEDIA_TYPE, Problem, domain_of

BEARER = "bearerAccessToken"
KIOSK = "kioskSignature"

SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    BEARER: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="An access token from /api/v1/auth/* (ES256/EdDSA, verified against /.well-known/jwks.json).",
    ),
    KIOSK: SecurityScheme(
        type="apiKey",
        name=kiosk.HEADER_SIG,
        security_scheme_in="header",
        description=(
            f"Kiosk sessions and kiosk logins: every request is signed by the registered kiosk with the "
            f"headers `{kiosk.HEADER_ID}`, `{kiosk.HEADER_TS}`, `{kiosk.HEADER_NONCE}` and "
            f"`{kiosk.HEADER_SIG}` (see tests/auth_helpers.py::Kiosk for the exact signed string)."
        ),
    ),
}
COMPONENTS = Components(security_schemes=SECURITY_SCHEMES)

_DESCRIPTIONS = {
    400: "The request is not valid",
    401: "Sign in (again)",
    403: "Not allowed for this caller",
    404: "Not found (another resident's object is answered the same way)",
    409: "Conflicts with the current state",
    410: "Gone",
    413: "Body too large",
    414: "URL too long",
    415: "The body is not application/json",
    422: "Understood but refused by a rule",
    429: "Too many requests (see Retry-After)",
    502: "An upstream system answered nonsense",
    503: "Busy or an upstream system is unavailable (see Retry-After)",
}
_COMMON = {
    400: ["validation_failed", "invalid_cursor"],
    401: ["unauthorized"],
    403: ["forbidden"],
    404: ["not_found"],
    409: ["conflict"],
    413: ["payload_too_large"],
    414: ["uri_too_long"],
    415: ["unsupported_media_type"],
    429: ["rate_limited"],
    502: ["bad_upstream_answer"],
    503: ["upstream_unavailable", "overloaded"],
}
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class RawBodyOperation(Operation):
    """An operation whose body is raw bytes (an upload), which Litestar does not parse."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                "application/octet-stream": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                )
            },
            description="The file's bytes (PDF, JPEG or PNG; the type is decided by the content).",
            required=True,
        )


def signed_callback(sender: str, headers: Sequence[str]) -> type[Operation]:
    """The operation class of a callback `sender` signs with `headers`.

    The headers are documented as required here rather than declared on the handler: a missing one
    must be the verifier's 401 (what the sender's retry logic expects), not the framework's 400."""
    required = [
        Parameter(
            name=name,
            param_in=ParamType.HEADER,
            required=True,
            schema=Schema(type=OpenAPIType.STRING),
            description=f"Set by {sender}; checked before the body is read.",
        )
        for name in headers
    ]

    @dataclass
    class SignedCallbackOperation(Operation):
        signed_callback: str = field(default=sender, metadata={"alias": "x-signed-callback"})

        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *required]

    return SignedCallbackOperation


def linked(links: dict[str, tuple[str, dict[str, str]]]) -> type[Operation]:
    """The operation class of a route whose success answer names what other operations take:
    `{link name: (target operationId, {target parameter: runtime expression})}`, e.g.
    `{"GetAppointment": ("ApiV1AppointmentsAppointmentIdGetAppointment",
    {"appointment_id": "$response.body#/id"})}`. The contract test checks every target exists."""
    made = {
        name: Link(operation_id=target, parameters=dict(parameters))
        for name, (target, parameters) in links.items()
    }

    @dataclass
    class LinkedOperation(Operation):
        def __post_init__(self) -> None:
            for status, response in (self.responses or {}).items():
                if str(status).startswith("2") and isinstance(response, OpenAPIResponse):
                    response.links = {**(response.links or {}), **made}

    return LinkedOperation


_DEVICE_GUARDS = frozenset({kiosk_signed, kiosk_signed_if_sent})


def _guards(handler: HTTPRouteHandler) -> list[Any]:
    return [g for g in handler.resolve_guards() if g is not require_principal_if_declared]


def _needs_login(handler: HTTPRouteHandler) -> bool:
    """A route that takes `principal`, or is guarded by anything but a device signature."""
    if "principal" in handler.parsed_fn_signature.parameters:
        return True
    return any(g not in _DEVICE_GUARDS for g in _guards(handler))


def _device_signed(handler: HTTPRouteHandler) -> bool:
    """A kiosk login, a refresh from a kiosk, or a route only kiosk sessions may call."""
    return any(g in _DEVICE_GUARDS or "kiosk" in getattr(g, "allowed_channels", ()) for g in _guards(handler))


def _statuses(handler: HTTPRouteHandler, path: str, login: bool) -> set[int]:
    # What the edge refuses for every route (bff/platform/inputs.py).
    statuses = {400, 414, 429, 503}
    if login or _device_signed(handler):
        statuses |= {401}
    if login and len(_guards(handler)) > 0:
        statuses |= {403}
    if "{" in path:
        statuses |= {404}
    if handler.http_methods & _MUTATING:
        statuses |= {409, 413, 415, 422}
    domain = domain_of(handler.fn.__module__)
    statuses |= {c.status for c in CODES.values() if domain_of(c.owner) == domain and c.status >= 400}
    if domain == "identity":
        statuses |= {401, 403}
    return {s for s in statuses if s in _DESCRIPTIONS or s == 500}


def _codes(status: int, domain: str, login: bool) -> list[str]:
    codes = list(_COMMON.get(status, []))
    for code, spec in CODES.items():
        if spec.status != status or code in codes:
            continue
        owner = domain_of(spec.owner)
        # Login and guard refusals (defined by identity for auth/) can come from any guarded route.
        if owner == domain or (login and owner == "identity" and status in (401, 403)):
            codes.append(code)
    return codes


def _acting(base: type[Operation], action: str) -> type[Operation]:
    """`base` with the X-Acting-For header documented (the routes an agent may call, auth/acting.py)."""
    header = Parameter(
        name="X-Acting-For",
        param_in=ParamType.HEADER,
        required=False,
        schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID),
        description=(
            f"代办: act for the principal of this mandate id; needs `{action}` in its scope "
            "(403 `mandate_out_of_scope`, `mandate_expired`, `mandate_revoked`, `mandate_unknown`, "
            "`mandate_not_accepted`, `mandate_pending_proof` otherwise). Every other route refuses the "
            "header with 403 `acting_not_allowed`."
        ),
    )

    @dataclass
    class ActingOperation(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            parent = getattr(super(), "__post_init__", None)
            if parent is not None:
                parent()
            declared: list[Any] = list(getattr(self, "parameters", None) or [])
            self.parameters = [*declared, header]

    return ActingOperation


def declare_contract(app: Litestar) -> None:
    """Add what the routes' signatures cannot say to every /api operation (see module docstring)."""
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            login = _needs_login(handler)
            domain = domain_of(handler.fn.__module__)
            responses: dict[int, ResponseSpec] = dict(handler.responses or {})
            for status in sorted(_statuses(handler, route.path, login)):
                codes = _codes(status, domain, login)
                listed = ", ".join(f"`{code}`" for code in codes) or "`internal_error`"
                responses.setdefault(
                    status,
                    ResponseSpec(
                        data_container=Problem,
                        media_type=PROBLEM_MEDIA_TYPE,
                        description=f"{_DESCRIPTIONS.get(status, 'Error')}. Codes: {listed}",
                        generate_examples=False,
                    ),
                )
            handler.responses = responses
            action = (handler.opt or {}).get(OPT_ACTION)
            if action is not None:
                handler.operation_class = _acting(handler.operation_class, action)
            # One requirement object is an AND of its schemes; the list is an OR of the objects.
            requirement: dict[str, list[str]] = {BEARER: []} if login else {}
            if _device_signed(handler):
                requirement[KIOSK] = []
            security = [requirement] if requirement else []
            if kiosk_signed_if_sent in _guards(handler):
                security = [{}, {KIOSK: []}]  # anonymous, or signed by the kiosk it names
            if security:
                handler.security = security
                handler._resolved_security = security  # type: ignore[attr-defined]
