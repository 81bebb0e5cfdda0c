"""The OpenAPI document is the contract the front-end teams generate their clients from (issue 8, item 4).

Built from the app itself (`create_app(Settings()).openapi_schema`, no servers, no lifespan) and read
the way a generator reads it. Which operations need a login, read a body or sit behind a guard is
decided from the app's route handlers, not from a hand-kept list. Every failing check names the
offending operations. `pytest tests/test_openapi_contract.py -s` also prints the counts the lead quotes.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from openapi_spec_validator import OpenAPIV31SpecValidator

from auth import kiosk
from auth.guards import authenticated, require_principal_if_declared
from bff.app import create_app
from bff.platform.settings import Settings

API = "/api/v1"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MUTATING = {"post", "put", "patch", "delete"}
# README decision: identity endpoints take no Idempotency-Key (a replay would keep tokens at rest;
# ending a session is idempotent by itself).
NO_IDEMPOTENCY_KEY_PREFIXES = ("/api/v1/auth/", "/api/v1/staff/kiosks", "/api/v1/me/sessions/")
# Callbacks upstream systems send us are marked in the document with who signs them; they
# de-duplicate by the sender's own event ids, so they take no Idempotency-Key.
SIGNED_CALLBACK = "x-signed-callback"
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_COMPONENT = "Problem"
PROBLEM_FIELDS = {"type", "title", "status", "code", "traceId", "detail"}
SUCCESS_MEDIA_TYPES = ("application/json", "text/event-stream")
BACKTICKED_CODE = re.compile(r"`[a-z][a-z0-9_]*`")
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
KIOSK_HEADERS = {kiosk.HEADER_ID, kiosk.HEADER_TS, kiosk.HEADER_NONCE, kiosk.HEADER_SIG}
READS_BODY = re.compile(r"\brequest\.(?:body|stream|json|form|msgpack)\(")
BARE_CLIENT_TYPES = {"str", "bytes", "Any", "File", "int", "float", "bool", "Unset"}


# ---------------------------------------------------------------------------------------------------
# The document and the app


@dataclass(frozen=True)
class Operation:
    method: str  # lower case, as in the document
    path: str
    item: dict[str, Any]  # the path item (for path-level parameters)
    op: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def is_api(self) -> bool:
        return self.path.startswith(API + "/") or self.path == API


@dataclass(frozen=True)
class HandlerFacts:
    needs_login: bool  # takes `principal` or has a guard
    guarded_beyond_login: bool  # has a guard that can refuse a signed-in caller (403)
    reads_body: bool  # takes `data` or reads the raw request body


@pytest.fixture(scope="module")
def app() -> Litestar:
    return create_app(Settings(), configure_logs=False)


@pytest.fixture(scope="module")
def spec(app: Litestar) -> dict[str, Any]:
    # Through JSON, exactly what `/schema/openapi.json` serves.
    document: dict[str, Any] = json.loads(json.dumps(app.openapi_schema.to_schema()))
    return document


@pytest.fixture(scope="module")
def operations(spec: dict[str, Any]) -> list[Operation]:
    return list(iter_operations(spec))


@pytest.fixture(scope="module")
def api_operations(operations: list[Operation]) -> list[Operation]:
    return [o for o in operations if o.is_api]


@pytest.fixture(scope="module")
def handlers(app: Litestar) -> dict[tuple[str, str], HandlerFacts]:
    return handler_facts(app)


def iter_operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec.get("paths", {}).items():
        for method in HTTP_METHODS:
            if isinstance(item.get(method), dict):
                yield Operation(method, path, item, item[method])


def handler_facts(app: Litestar) -> dict[tuple[str, str], HandlerFacts]:
    """(method, path as the document writes it) -> what the handler needs, read from the handler."""
    login_only = {require_principal_if_declared, authenticated}
    facts: dict[tuple[str, str], HandlerFacts] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            # A kiosk's device signature (auth.device) is not a login: it names a kiosk, not a person.
            guards = [
                g
                for g in handler.resolve_guards()
                if g is not require_principal_if_declared and getattr(g, "__module__", "") != "auth.device"
            ]
            parameters = handler.parsed_fn_signature.parameters
            try:
                source = inspect.getsource(inspect.unwrap(handler.fn))
            except (OSError, TypeError):
                source = ""
            fact = HandlerFacts(
                needs_login="principal" in parameters or bool(guards),
                guarded_beyond_login=any(g not in login_only for g in guards),
                reads_body="data" in parameters or bool(READS_BODY.search(source)),
            )
            for method in handler.http_methods:
                facts[(method.lower(), route.path_format)] = fact
    return facts


def facts_of(handlers: dict[tuple[str, str], HandlerFacts], o: Operation) -> HandlerFacts:
    fact = handlers.get((o.method, o.path))
    assert fact is not None, f"{o.name} is in the document but no route handler of the app serves it"
    return fact


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow `$ref`s inside the document."""
    for _ in range(32):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return node
        ref = node["$ref"]
        assert ref.startswith("#/"), f"external $ref {ref}"
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    raise AssertionError("a $ref cycle")


def component_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        prefix = "#/components/schemas/"
        ref: str = node["$ref"]
        return ref[len(prefix) :] if ref.startswith(prefix) else None
    return None


def types_of(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    return set(declared) if isinstance(declared, list) else set()


def is_structured(spec: dict[str, Any], schema: Any) -> bool:
    """An object, an array, or a `$ref`/composition that comes down to one (null aside)."""
    schema = resolve(spec, schema)
    if not isinstance(schema, dict) or not schema:
        return False
    kinds = types_of(schema) - {"null"}
    if kinds:
        return kinds <= {"object", "array"}
    if "properties" in schema:
        return True
    for key in ("oneOf", "anyOf"):
        if key in schema:
            members = [m for m in schema[key] if resolve(spec, m) != {"type": "null"}]
            return bool(members) and all(is_structured(spec, m) for m in members)
    if "allOf" in schema:
        return any(is_structured(spec, m) for m in schema["allOf"])
    return False


def success_responses(o: Operation) -> list[tuple[str, dict[str, Any]]]:
    return [(c, r) for c, r in o.op.get("responses", {}).items() if str(c).startswith("2")]


def error_responses(spec: dict[str, Any], o: Operation) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(c), resolve(spec, r))
        for c, r in o.op.get("responses", {}).items()
        if str(c)[:1] in {"4", "5"} or str(c).upper() in {"4XX", "5XX"}
    ]


def typed_success(spec: dict[str, Any], response: dict[str, Any]) -> bool:
    content = resolve(spec, response).get("content") or {}
    bodies = [content[m] for m in SUCCESS_MEDIA_TYPES if m in content]
    return bool(bodies) and all(is_structured(spec, b.get("schema")) for b in bodies)


def references_problem(spec: dict[str, Any], schema: Any) -> bool:
    """The schema is the Problem component, or a component/inline allOf that extends it."""
    for _ in range(32):
        if component_name(schema) == PROBLEM_COMPONENT:
            return True
        if not (isinstance(schema, dict) and "$ref" in schema):
            break
        schema = resolve(spec, {"$ref": schema["$ref"]})
    if isinstance(schema, dict) and "allOf" in schema:
        return any(references_problem(spec, m) for m in schema["allOf"])
    return False


def is_problem_response(spec: dict[str, Any], response: dict[str, Any]) -> bool:
    content = response.get("content") or {}
    return set(content) == {PROBLEM_MEDIA_TYPE} and references_problem(
        spec, content[PROBLEM_MEDIA_TYPE].get("schema")
    )


def parameters(spec: dict[str, Any], o: Operation) -> list[dict[str, Any]]:
    found = [resolve(spec, p) for p in o.item.get("parameters", []) + o.op.get("parameters", [])]
    return [p for p in found if isinstance(p, dict)]


def idempotency_key(spec: dict[str, Any], o: Operation) -> dict[str, Any] | None:
    for p in parameters(spec, o):
        if p.get("in") == "header" and str(p.get("name", "")).lower() == "idempotency-key":
            return p
    return None


def takes_idempotency_key(o: Operation) -> bool:
    return (
        o.is_api
        and o.method in MUTATING
        and not o.path.startswith(NO_IDEMPOTENCY_KEY_PREFIXES)
        and SIGNED_CALLBACK not in o.op
    )


def schemes_of(spec: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    schemes = spec.get("components", {}).get("securitySchemes", {})
    resolved = {n: resolve(spec, s) for n, s in schemes.items()}
    if kind == "bearer":
        return {
            n: s
            for n, s in resolved.items()
            if s.get("type") == "http"
            and str(s.get("scheme", "")).lower() == "bearer"
            and s.get("bearerFormat") == "JWT"
        }
    return {n: s for n, s in resolved.items() if s.get("type") == "apiKey" and s.get("in") == "header"}


def effective_security(spec: dict[str, Any], o: Operation) -> list[dict[str, Any]]:
    requirements: list[dict[str, Any]] = o.op.get("security", spec.get("security", []))
    return requirements


def property_names(
    spec: dict[str, Any], schema: Any, where: str, seen: set[int]
) -> Iterator[tuple[str, str]]:
    """(where, name) for every property name declared in a schema, nested schemas included."""
    if not isinstance(schema, dict) or id(schema) in seen or "$ref" in schema:
        return  # components are walked once, by name
    seen.add(id(schema))
    for name, sub in (schema.get("properties") or {}).items():
        yield where, name
        yield from property_names(spec, sub, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties", "not", "contains", "propertyNames"):
        yield from property_names(spec, schema.get(key), f"{where}[{key}]", seen)
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key) or []):
            yield from property_names(spec, sub, f"{where}[{key}{i}]", seen)
    for key in ("$defs", "patternProperties", "dependentSchemas"):
        for name, sub in (schema.get(key) or {}).items():
            yield from property_names(spec, sub, f"{where}[{key}.{name}]", seen)


def inline_schemas(o: Operation) -> Iterator[tuple[str, Any]]:
    body = o.op.get("requestBody") or {}
    for media, entry in (body.get("content") or {}).items():
        yield f"{o.name} requestBody {media}", entry.get("schema")
    for code, response in (o.op.get("responses") or {}).items():
        for media, entry in ((response or {}).get("content") or {}).items():
            yield f"{o.name} {code} {media}", entry.get("schema")
        for header, entry in ((response or {}).get("headers") or {}).items():
            yield f"{o.name} {code} header {header}", (entry or {}).get("schema")
    for p in o.op.get("parameters") or []:
        yield f"{o.name} parameter {p.get('name')}", p.get("schema")


def listing(names: list[str]) -> str:
    return "\n  " + "\n  ".join(names) if names else " none"


def expect_none(offenders: list[str], headline: str) -> None:
    """Fail with the headline and one line per offender (no assertion rewriting noise)."""
    if offenders:
        pytest.fail(f"{len(offenders)} {headline}:{listing(offenders)}", pytrace=False)


# ---------------------------------------------------------------------------------------------------
# The generated client


@dataclass(frozen=True)
class GeneratedClient:
    returncode: int
    log: str
    package: Path  # the generated package (api/, models/, client.py …)


@pytest.fixture(scope="module")
def generated(spec: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> GeneratedClient:
    """openapi-python-client run offline from the document into a temporary folder."""
    work = tmp_path_factory.mktemp("openapi-client")
    (work / "openapi.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    (work / "config.yaml").write_text("post_hooks: []\n", encoding="utf-8")  # no formatter run
    out = work / "client"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(work / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(out),
            "--config",
            str(work / "config.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    return GeneratedClient(done.returncode, done.stdout, out)


def generator_warnings(log: str) -> list[str]:
    """'<where>: <why>' for each warning the generator printed."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    found = []
    for i, line in enumerate(lines):
        if re.match(r"(?i)warning", line) and not line.startswith("Warning(s) encountered"):
            why = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>", "…", lines[i + 1] if i + 1 < len(lines) else "")
            found.append(f"{line}: {why}")
    if not found and re.search(r"(?i)warning|unsupported|unable to|cannot parse", log):
        found.append(log.strip()[:2000])
    return found


def client_endpoints(package: Path) -> dict[tuple[str, str], list[str]]:
    """(method, url template) -> the non-None members of `_parse_response`'s return annotation."""

    def url_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return url_of(node.func.value)  # "/a/{x}".format(x=...)
        if isinstance(node, ast.JoinedStr):
            return "".join(
                str(v.value) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                for v in node.values
            )
        return None

    def members(node: ast.expr | None) -> list[str]:
        if node is None:
            return ["Any"]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return members(node.left) + members(node.right)
        text = ast.unparse(node)
        if text.startswith(("Optional[", "Union[")):
            return [m.strip() for m in text[text.index("[") + 1 : -1].split(",")]
        return [text]

    endpoints: dict[tuple[str, str], list[str]] = {}
    for module in sorted((package / "api").rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
        if "_get_kwargs" not in functions or "_parse_response" not in functions:
            continue
        method = url = None
        for node in ast.walk(functions["_get_kwargs"]):
            if isinstance(node, ast.Dict):
                keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
                if "method" in keys and "url" in keys:
                    method_node = node.values[keys.index("method")]
                    method = method_node.value if isinstance(method_node, ast.Constant) else None
                    url = url_of(node.values[keys.index("url")])
        if isinstance(method, str) and url is not None:
            returned = members(functions["_parse_response"].returns)
            endpoints[(method.lower(), url)] = [m for m in returned if m != "None"]
    return endpoints


def template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


# ---------------------------------------------------------------------------------------------------
# 1. Valid OpenAPI 3.1


def test_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert str(spec.get("openapi", "")).startswith("3.1"), f"openapi version is {spec.get('openapi')!r}"
    try:
        errors = [
            f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}"
            for e in OpenAPIV31SpecValidator(spec).iter_errors()
        ]
    except Exception as exc:  # the validator gives up on some malformed documents
        errors = [f"the validator stopped on the document: {exc!r}"]
    expect_none(errors, "errors make the document invalid OpenAPI 3.1")


# ---------------------------------------------------------------------------------------------------
# 2. A typed client can be generated


def test_client_generates_without_warnings(generated: GeneratedClient) -> None:
    assert generated.returncode == 0, f"openapi-python-client failed:\n{generated.log[-4000:]}"
    assert (generated.package / "client.py").is_file(), f"no client generated:\n{generated.log[-4000:]}"
    warnings = generator_warnings(generated.log)
    expect_none(
        warnings,
        "openapi-python-client warned about operations/schemas "
        "(those pieces are missing from the generated client)",
    )


def test_generated_client_types_every_success_response(
    spec: dict[str, Any], api_operations: list[Operation], generated: GeneratedClient
) -> None:
    assert generated.returncode == 0, f"openapi-python-client failed:\n{generated.log[-4000:]}"
    endpoints = {(m, template(u)): t for (m, u), t in client_endpoints(generated.package).items()}
    assert endpoints, "found no endpoint module in the generated client"
    offenders = []
    for o in api_operations:
        if not any(code != "204" for code, _ in success_responses(o)):
            continue  # 204 only: nothing to type
        returned = endpoints.get((o.method, template(o.path)))
        if returned is None:
            offenders.append(f"{o.name}: no function in the generated client")
        elif not returned or set(returned) & BARE_CLIENT_TYPES:
            offenders.append(f"{o.name}: the client returns {' | '.join(returned) or 'nothing'}")
    expect_none(offenders, "/api/v1 operations whose generated client returns a bare type")


def test_every_success_response_has_a_structured_schema(
    spec: dict[str, Any], api_operations: list[Operation]
) -> None:
    offenders = []
    for o in api_operations:
        successes = success_responses(o)
        if not successes:
            offenders.append(f"{o.name}: no 2xx response declared")
        for code, response in successes:
            if code != "204" and not typed_success(spec, response):
                content = resolve(spec, response).get("content") or {}
                shown = {m: resolve(spec, e.get("schema")) for m, e in content.items()}
                offenders.append(f"{o.name} {code}: {json.dumps(shown, ensure_ascii=False)[:160]}")
    expect_none(
        offenders, "success responses without an application/json or text/event-stream object/array schema"
    )


# ---------------------------------------------------------------------------------------------------
# 3. Errors are problem documents


def test_problem_component_has_the_problem_fields(spec: dict[str, Any]) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    assert PROBLEM_COMPONENT in schemas, (
        f"no `{PROBLEM_COMPONENT}` component schema; components are {sorted(schemas)}"
    )
    problem = resolve(spec, schemas[PROBLEM_COMPONENT])
    missing = PROBLEM_FIELDS - set(problem.get("properties") or {})
    assert not missing, f"the {PROBLEM_COMPONENT} component lacks the properties {sorted(missing)}"
    required = problem.get("required")
    assert isinstance(required, list) and required, (
        f"the {PROBLEM_COMPONENT} component has no `required` list"
    )
    assert set(required) <= set(problem["properties"]), "`required` names properties that do not exist"


def test_every_error_response_is_a_problem_document(
    spec: dict[str, Any], api_operations: list[Operation]
) -> None:
    offenders = []
    for o in api_operations:
        for code, response in error_responses(spec, o):
            if not is_problem_response(spec, response):
                content = response.get("content") or {}
                offenders.append(
                    f"{o.name} {code}: content {sorted(content) or 'none'}"
                    f", schema {[component_name(e.get('schema')) or 'inline' for e in content.values()]}"
                )
    expect_none(
        offenders, f"error responses not declared as {PROBLEM_MEDIA_TYPE} with the {PROBLEM_COMPONENT} schema"
    )


def test_every_operation_declares_the_problems_it_can_answer(
    spec: dict[str, Any], api_operations: list[Operation], handlers: dict[tuple[str, str], HandlerFacts]
) -> None:
    offenders = []
    for o in api_operations:
        facts = facts_of(handlers, o)
        expected = {"400", "429", "503"}
        if facts.needs_login:
            expected.add("401")
        if facts.guarded_beyond_login:
            expected.add("403")
        declared = {
            code for code, response in error_responses(spec, o) if is_problem_response(spec, response)
        }
        missing = expected - declared
        if missing:
            offenders.append(f"{o.name}: no problem response for {', '.join(sorted(missing))}")
    expect_none(
        offenders, "operations missing their 400/429/503 (and 401/403 when guarded) problem responses"
    )


def test_every_problem_response_lists_its_codes(
    spec: dict[str, Any], api_operations: list[Operation]
) -> None:
    offenders = [
        f"{o.name} {code}: {str(response.get('description', ''))[:80]!r}"
        for o in api_operations
        for code, response in error_responses(spec, o)
        if not BACKTICKED_CODE.search(str(response.get("description", "")))
    ]
    expect_none(offenders, "error responses whose description names no machine `code`")


# ---------------------------------------------------------------------------------------------------
# 4. Idempotency-Key


def test_every_mutating_operation_declares_idempotency_key(
    spec: dict[str, Any], api_operations: list[Operation]
) -> None:
    offenders = []
    for o in api_operations:
        if not takes_idempotency_key(o):
            continue
        header = idempotency_key(spec, o)
        if header is None:
            offenders.append(f"{o.name}: no Idempotency-Key header parameter")
        elif o.method == "post" and header.get("required") is not True:
            offenders.append(f"{o.name}: Idempotency-Key declared but not required")
        elif not header.get("schema"):
            offenders.append(f"{o.name}: Idempotency-Key without a schema")
    expect_none(offenders, "mutating operations without a (required, for POST) Idempotency-Key header")


# ---------------------------------------------------------------------------------------------------
# 5. Security


def test_signed_callbacks_name_their_sender_and_require_their_signature_headers(
    spec: dict[str, Any], operations: list[Operation]
) -> None:
    callbacks = [o for o in operations if SIGNED_CALLBACK in o.op]
    assert callbacks, "no operation is marked as a signed callback"
    offenders = []
    for o in callbacks:
        if o.method != "post" or not str(o.op[SIGNED_CALLBACK]).strip():
            offenders.append(f"{o.name}: a callback is a POST naming its sender")
        if o.op.get("security"):
            offenders.append(f"{o.name}: a callback needs no login, its signature is the proof")
        headers = [p for p in parameters(spec, o) if p.get("in") == "header"]
        signed = [p for p in headers if "signature" in str(p.get("name", "")).lower()]
        if not signed or not all(p.get("required") and p.get("schema") for p in headers):
            offenders.append(f"{o.name}: signature headers missing, optional or untyped: {headers}")
    expect_none(offenders, "signed callbacks the document does not describe as such")


def test_security_schemes_describe_bearer_tokens_and_kiosk_signatures(spec: dict[str, Any]) -> None:
    declared = spec.get("components", {}).get("securitySchemes", {})
    assert schemes_of(spec, "bearer"), (
        f"no HTTP bearer scheme with bearerFormat JWT in components.securitySchemes ({declared or 'none'})"
    )
    api_keys = schemes_of(spec, "apiKey")
    named = {str(s.get("name", "")).lower() for s in api_keys.values()}
    described = [
        n
        for n, s in api_keys.items()
        if str(s.get("name", "")).lower() in KIOSK_HEADERS
        and all(h in str(s.get("description", "")).lower() for h in KIOSK_HEADERS)
    ]
    assert named >= KIOSK_HEADERS or described, (
        f"no apiKey header scheme describes the kiosk signature headers {sorted(KIOSK_HEADERS)} "
        f"(apiKey header schemes: {sorted(api_keys) or 'none'})"
    )


def test_operations_that_need_a_login_list_the_bearer_scheme(
    spec: dict[str, Any], operations: list[Operation], handlers: dict[tuple[str, str], HandlerFacts]
) -> None:
    bearer = set(schemes_of(spec, "bearer"))
    offenders = []
    for o in operations:
        if not facts_of(handlers, o).needs_login:
            continue
        requirements = effective_security(spec, o)
        if not requirements or not all(set(r) & bearer for r in requirements):
            offenders.append(f"{o.name}: security {requirements}")
    expect_none(
        offenders,
        f"operations whose handler needs a login but whose security does not "
        f"require the bearer scheme {sorted(bearer) or '(none declared)'}",
    )


def test_anonymous_operations_do_not_list_the_bearer_scheme(
    spec: dict[str, Any], operations: list[Operation], handlers: dict[tuple[str, str], HandlerFacts]
) -> None:
    anonymous = [o for o in operations if not facts_of(handlers, o).needs_login]
    # The derivation from the handlers must see the open routes as open.
    open_routes = {o.name for o in anonymous}
    for name in ("GET /api/v1/items", "GET /api/v1/halls", "POST /api/v1/auth/wechat/login", "GET /healthz"):
        assert name in open_routes, f"{name} should be anonymous; the handler facts say otherwise"
    bearer = set(schemes_of(spec, "bearer")) or {"bearer", "Bearer", "BearerToken", "bearerAuth"}
    offenders = [
        f"{o.name}: security {effective_security(spec, o)}"
        for o in anonymous
        if any(set(r) & bearer for r in effective_security(spec, o))
    ]
    expect_none(offenders, "anonymous operations list the bearer scheme")


# ---------------------------------------------------------------------------------------------------
# 6. Request bodies


def test_every_request_body_read_is_declared(
    spec: dict[str, Any], operations: list[Operation], handlers: dict[tuple[str, str], HandlerFacts]
) -> None:
    offenders = []
    for o in operations:
        if o.method not in {"post", "put", "patch"} or not facts_of(handlers, o).reads_body:
            continue
        body = resolve(spec, o.op.get("requestBody")) or {}
        content = body.get("content") or {}
        if not content:
            offenders.append(f"{o.name}: the handler reads a body, no requestBody is declared")
        for media, entry in content.items():
            if not resolve(spec, (entry or {}).get("schema")):
                offenders.append(f"{o.name}: requestBody {media} has no schema")
    expect_none(offenders, "request bodies read but not declared")


# ---------------------------------------------------------------------------------------------------
# 7. camelCase


def test_every_property_name_is_camel_case(spec: dict[str, Any], operations: list[Operation]) -> None:
    seen: set[int] = set()
    names: list[tuple[str, str]] = []
    for component, schema in spec.get("components", {}).get("schemas", {}).items():
        names += property_names(spec, schema, component, seen)
    for o in operations:
        if o.is_api:  # the ops routes' (healthz, readyz, metrics) inline schemas are exempt
            for where, schema in inline_schemas(o):
                names += property_names(spec, schema, where, seen)
    offenders = sorted({f"{where}: {name}" for where, name in names if not CAMEL.match(name)})
    expect_none(offenders, "property names that are not camelCase")


# ---------------------------------------------------------------------------------------------------
# 8. The counts the lead quotes


def test_print_contract_counts(spec: dict[str, Any], operations: list[Operation]) -> None:
    api = [o for o in operations if o.is_api]
    successes = [(o, r) for o in api for code, r in success_responses(o) if code != "204"]
    typed = [1 for _, r in successes if typed_success(spec, r)]
    keyed = [o for o in api if takes_idempotency_key(o)]
    declaring = [o for o in keyed if idempotency_key(spec, o) is not None]
    errors = [(o, r) for o in api for _, r in error_responses(spec, o)]
    problems = [1 for _, r in errors if is_problem_response(spec, r)]
    print(
        "\nOpenAPI contract counts:"
        f"\n  operations: {len(operations)} ({len(api)} under {API})"
        f"\n  typed success responses: {len(typed)} of {len(successes)} (2xx other than 204, {API})"
        f"\n  operations declaring Idempotency-Key: {len(declaring)} of {len(keyed)} that must"
        f"\n  error responses declared as problem documents: {len(problems)} of {len(errors)}"
        f"\n  signed callbacks (x-signed-callback): {sum(SIGNED_CALLBACK in o.op for o in api)}"
    )
    assert api, f"no operation under {API} in the document"


def test_every_link_leads_to_an_operation_and_its_parameters(spec: dict[str, Any]) -> None:
    """Issue 9 §1: OpenAPI links (followed by client generators and the stateful schemathesis test)
    name operations that exist, parameters those operations take, and a member the answer's schema
    has; at least the booking and application flows are linked."""
    by_id = {o.op["operationId"]: o for o in iter_operations(spec) if "operationId" in o.op}
    linked: list[str] = []
    for o in iter_operations(spec):
        for status, response in success_responses(o):
            for name, link in (resolve(spec, response).get("links") or {}).items():
                target = by_id.get(link.get("operationId"))
                assert target is not None, (o.name, name, link)
                taken = {p["name"] for p in parameters(spec, target)}
                for parameter, expression in link.get("parameters", {}).items():
                    assert parameter in taken, (o.name, name, parameter, sorted(taken))
                    assert expression.startswith("$response.body#/"), (o.name, name, expression)
                    schema = resolve(spec, resolve(spec, response)["content"]["application/json"]["schema"])
                    for member in expression.removeprefix("$response.body#/").split("/"):
                        schema = resolve(spec, schema)
                        assert member in schema.get("properties", {}), (o.name, status, expression)
                        schema = schema["properties"][member]
                linked.append(f"{o.name} -> {target.name}")
    assert "POST /api/v1/appointments -> POST /api/v1/appointments/{appointment_id}/cancel" in linked, linked
    assert "POST /api/v1/cases -> GET /api/v1/cases/{case_id}" in linked, linked
