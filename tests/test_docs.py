"""The documentation that operators rely on stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from bff.platform.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_env_example_documents_every_setting() -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    expected = {name.upper() for name in Settings.__struct_fields__}
    assert expected - documented == set(), "settings missing from .env.example"
    assert documented - expected == set(), ".env.example names settings that do not exist"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    head = readme[: readme.index("\n## ")]
    assert "make run" in head and "make test" in head


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_production_code_never_imports_sandbox_and_layers_point_one_way() -> None:
    rules = {
        "adapters": {"bff", "auth", "push", "sandbox"},
        "auth": {"bff", "push", "sandbox"},
        "push": {"bff", "auth", "sandbox"},
        "bff": {"sandbox"},
        "sandbox": {"bff", "auth", "push", "adapters"},
    }
    offenders = []
    for package, forbidden in rules.items():
        for path in (REPO / package).rglob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                match = re.match(r"\s*(?:from|import)\s+([a-z_]+)", line)
                if match and match.group(1) in forbidden:
                    offenders.append(f"{path.relative_to(REPO)}: {line.strip()}")
    assert offenders == []


# --- the house (docs/conventions.md): where code may live and what it may import ---

BFF = REPO / "bff"
SHARED = {"platform", "idempotency", "ops"}  # what every domain may use
DOMAINS = sorted(
    p.name for p in BFF.iterdir() if p.is_dir() and (p / "__init__.py").exists() and p.name not in SHARED
)
# A domain may use another only through that domain's named read ports: its service (the use cases
# other domains call) and its schemas (the types those calls take and return).
PORTS = {"service", "schemas"}
_IMPORT = re.compile(r"^\s*(?:from|import)\s+(bff\.[a-z_.]+)", re.MULTILINE)


def _imports(path: Path) -> list[str]:
    return _IMPORT.findall(path.read_text(encoding="utf-8"))


def test_domains_use_each_other_only_through_named_read_ports_and_never_in_a_cycle() -> None:
    assert {"appointments", "cases", "catalogue", "identity", "ratings", "uploads"} <= set(DOMAINS)
    offenders, edges = [], set()
    for domain in DOMAINS:
        for path in (BFF / domain).rglob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                other = parts[1]
                if other in SHARED or other == domain or other not in DOMAINS:
                    continue
                edges.add((domain, other))
                if len(parts) < 3 or parts[2] not in PORTS:
                    offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert offenders == [], "a domain reached into another's internals"
    # No cycle between domain folders (a port that would close one is a Protocol the root wires).
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ())
        )

    cycles = [(a, b) for a, b in sorted(edges) if reaches(b, a, {b})]
    assert cycles == [], f"domain folders import each other in a cycle: {cycles}"


_SQL = re.compile(
    r"\.(fetch|fetchrow|fetchval|execute|executemany|acquire)\(|\b(SELECT|INSERT|UPDATE|DELETE)\b\s"
)


def test_no_controller_runs_sql_or_reads_settings() -> None:
    offenders = []
    for path in BFF.rglob("controllers.py"):
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            if _SQL.search(line) or re.search(r"\bSettings\b|\bdb_pool\b|asyncpg", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_upstreams_are_made_only_in_the_composition_root() -> None:
    offenders = []
    for package in ("bff", "auth", "push", "adapters"):
        for path in (REPO / package).rglob("*.py"):
            if path == BFF / "wiring.py":
                continue
            if re.search(r"\bUpstream\(", path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_jobs_are_listed_by_the_root_not_registered_by_import() -> None:
    from bff.wiring import Job, Root

    offenders = []
    for package in ("bff", "auth", "push"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"\bJOBS\b|\bregister\(\s*Job\(", text):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], "jobs must be listed in bff/wiring.py, not registered as a side effect"
    # Every listed job is a method of one of the root's services (the process's one set of upstreams).
    source = (BFF / "wiring.py").read_text(encoding="utf-8")
    listed = re.findall(r'Job\("([a-z_]+)",[^)]*run=([a-z_]+)\.([a-z_]+)\)', source)
    assert listed and len({name for name, _, _ in listed}) == len(listed)
    services = set(Root.__dataclass_fields__)
    for name, owner, _ in listed:
        assert owner in services or owner in source, (name, owner)
    assert Job.__dataclass_fields__.keys() == {"name", "interval", "budget", "run"}


def test_every_problem_code_is_defined_once_and_every_raised_code_is_defined() -> None:
    import ast

    import bff.app  # noqa: F401 - importing the app defines every code
    from bff.platform.problems import CODES, define

    try:
        define("tests", {"slot_full": (409, "重复", "Duplicate")})
    except ValueError:
        pass
    else:
        raise AssertionError("defining a code twice must fail")
    raised = set()
    for package in ("bff", "auth", "adapters", "push"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    for keyword in node.keywords:
                        if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                            raised.add(keyword.value.value)
    assert sorted(raised - set(CODES)) == []


def test_camel_case_comes_from_one_base_struct() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in BFF.rglob("*.py")
        if 'rename="camel"' in path.read_text(encoding="utf-8") and path != BFF / "platform" / "schema.py"
    ]
    assert offenders == []
