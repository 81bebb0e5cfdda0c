"""Issue 9 §5: a problem document's `detail` is in the request's language. Every refusal the code
can raise carries its Chinese text (`detail_zh`) beside the English one, so a zh-CN resident (the
default) never reads an English sentence; the walk below finds every sibling, new ones included.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import httpx

from adapters.errors import ProblemError
from tests.auth_helpers import login_resident
from tests.test_journey_helpers import auth, key, upstream_urls

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bff", "auth", "push", "adapters")


def _problem_classes() -> set[str]:
    """Every ProblemError class whose constructor takes a detail, found from the code itself.
    (One that makes its own detail, e.g. from an upstream's refusal, is checked at its
    `super().__init__` call instead.)"""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if ".static" not in info.name:
                importlib.import_module(info.name)
    found: set[str] = set()
    todo: list[type] = [ProblemError]
    while todo:
        cls = todo.pop()
        if "detail" in inspect.signature(cls.__init__).parameters:
            found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def _all_problem_classes() -> set[str]:
    found: set[str] = set()
    todo: list[type] = [ProblemError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def _callee(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _untranslated() -> list[str]:
    classes = _problem_classes()
    owners = _all_problem_classes() - {"ProblemError"}  # ProblemError hands its text to Exception
    missing: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for owner in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]:
                is_problem = isinstance(owner, ast.ClassDef) and owner.name in owners
                for node in ast.walk(owner):
                    if not isinstance(node, ast.Call):
                        continue
                    name = _callee(node)
                    # A ProblemError subclass handing its detail to ProblemError's constructor.
                    via_super = is_problem and name == "__init__" and isinstance(node.func, ast.Attribute)
                    if name not in classes and not via_super:
                        continue
                    keywords = {k.arg for k in node.keywords}
                    detail = bool(node.args) or "detail" in keywords
                    if detail and not keywords & {"detail_zh", "zh"}:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return sorted(set(missing))


def test_every_refusal_has_a_chinese_detail() -> None:
    missing = _untranslated()
    assert not missing, "refusals without detail_zh:\n" + "\n".join(missing)


async def test_a_refusal_speaks_the_requests_language(
    make_client: Any, sandbox_url: str, sandbox: httpx.AsyncClient
) -> None:
    """Over HTTP: the same refusal in zh (the default) and in en, and a refusal recorded as the
    answer to an Idempotency-Key (rendered by the idempotency store, not the app's handler)."""
    client = await make_client(**upstream_urls(sandbox_url))
    long = {"q": "办" * 65}
    zh = await client.get("/api/v1/items", params=long)
    en = await client.get("/api/v1/items", params=long, headers={"Accept-Language": "en"})
    assert zh.status_code == en.status_code == 400
    assert zh.json()["detail"] == "q：最多 64 个字符，请输入事项名称或几个关键词", zh.text
    assert en.json()["detail"].startswith("q: at most 64 characters"), en.text

    who = await login_resident(client, sandbox)
    body = {"slotId": "no-such-slot"}
    recorded_zh = await client.post("/api/v1/appointments/holds", json=body, headers=auth(who, key()))
    recorded_en = await client.post(
        "/api/v1/appointments/holds", json=body, headers=auth(who, key(), **{"Accept-Language": "en"})
    )
    assert recorded_zh.status_code == recorded_en.status_code == 404, recorded_zh.text
    assert recorded_zh.json()["detail"] == "未找到该预约时段", recorded_zh.text
    assert recorded_en.json()["detail"] != "未找到该预约时段", recorded_en.text
