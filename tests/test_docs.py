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
