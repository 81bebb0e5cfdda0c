"""`sanxiang`: serve, worker, sandbox, migrate, seed, dev."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bff.platform.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from bff.catalogue.sync import SyncReport


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(str(exc))


def _require_urls(settings: Settings) -> tuple[str, str]:
    if not settings.database_url:
        sys.exit("configuration error in DATABASE_URL: not set (use `sanxiang dev` for embedded servers)")
    if not settings.redis_url:
        sys.exit("configuration error in REDIS_URL: not set (use `sanxiang dev` for embedded servers)")
    return settings.database_url, settings.redis_url


def cmd_serve(settings: Settings) -> None:
    _require_urls(settings)
    import uvicorn

    from bff.platform.server import ProblemHttpToolsProtocol

    uvicorn.run(
        "bff.asgi:app_factory",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        # X-Forwarded-For is believed only from these peers (TRUSTED_PROXIES, see .env.example).
        proxy_headers=settings.trusted_proxies.strip().lower() != "none",
        forwarded_allow_ips=settings.trusted_proxies,
        loop="uvloop",
        http=ProblemHttpToolsProtocol,  # httptools; its own refusals are problem documents
        log_config=None,
        access_log=False,
        server_header=False,  # no `server: uvicorn` banner: nothing tells a scanner what runs here
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def cmd_migrate(settings: Settings) -> None:
    from bff.platform.db import session_url
    from bff.platform.migrate import MigrationError, migrate

    _require_urls(settings)
    try:
        # DDL under a session lock: PostgreSQL itself, not PgBouncer.
        applied = asyncio.run(migrate(session_url(settings)))
    except MigrationError as exc:
        sys.exit(f"migration refused: {exc}")
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or '-'}")  # noqa: T201


def cmd_worker(settings: Settings) -> None:
    _require_urls(settings)
    from bff.worker import run_worker

    async def main() -> None:
        # SIGTERM (a rolling restart) stops the worker as Ctrl-C does: jobs finish, the lock is let go.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop=stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


_SANDBOX_DEFAULT = "http://127.0.0.1:8100"


def _child_env(settings: Settings, database_url: str, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    env["REDIS_URL"] = redis_url
    env.setdefault("SANDBOX_PORT", str(settings.sandbox_port))
    # Upstream URLs left at their defaults follow the sandbox wherever it was told to listen.
    sandbox_url = f"http://{settings.sandbox_host}:{settings.sandbox_port}"
    for name in Settings.__struct_fields__:
        value = getattr(settings, name)
        overridable = name.endswith("_url") and isinstance(value, str) and name.upper() not in os.environ
        if overridable and value.startswith(_SANDBOX_DEFAULT):
            env[name.upper()] = sandbox_url + value[len(_SANDBOX_DEFAULT) :]
    return env


def dev_notify_url(settings: Settings) -> str:
    """Where `sanxiang dev` tells the case system to deliver webhooks: the API it starts."""
    host = "127.0.0.1" if settings.api_host in {"0.0.0.0", "::", ""} else settings.api_host  # noqa: S104
    return f"http://{host}:{settings.api_port}/api/v1/case-events"


def _sandbox_cmd(settings: Settings, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sandbox",
        *extra,
        "--host",
        settings.sandbox_host,
        "--port",
        str(settings.sandbox_port),
    ]


def cmd_sandbox(settings: Settings) -> None:
    database_url, redis_url = _require_urls(settings)
    os.execvpe(sys.executable, _sandbox_cmd(settings), _child_env(settings, database_url, redis_url))  # noqa: S606


def cmd_seed(settings: Settings) -> None:
    database_url, redis_url = _require_urls(settings)
    subprocess.run(  # noqa: S603
        _sandbox_cmd(settings, "seed"), env=_child_env(settings, database_url, redis_url), check=True
    )
    print("demo data seeded")  # noqa: T201


def _wait_http(url: str, seconds: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode} before answering")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our loopback URL
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def cmd_dev(settings: Settings) -> None:
    """Everything for a demo: embedded servers if needed, migrations, sandbox, worker, API."""
    from bff.platform.embedded import EmbeddedServers
    from bff.platform.migrate import migrate

    embedded: EmbeddedServers | None = None
    children: list[subprocess.Popen[bytes]] = []
    extras: list[subprocess.Popen[bytes]] = []  # stopped with the rest; their exit stops nothing

    def shutdown(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    try:
        database_url, redis_url = settings.database_url, settings.redis_url
        if not database_url or not redis_url:
            embedded = EmbeddedServers(Path(settings.data_dir) / "embedded")
            emb_db, emb_redis = embedded.start()
            database_url = database_url or emb_db
            redis_url = redis_url or emb_redis
            print(f"embedded PostgreSQL and Redis started in {embedded.data_dir}")  # noqa: T201
        asyncio.run(migrate(database_url))
        env = _child_env(settings, database_url, redis_url)
        # The demo shows the whole province (100,000+ catalogue entries; seeding takes ~30 s once).
        env.setdefault("SANDBOX_CATALOGUE_SCALE", "full")
        # The case system delivers its webhooks to this API, so case changes arrive in about a
        # second instead of at the reconciler's next poll.
        if not env.get("CASE_NOTIFY_URL"):
            env["CASE_NOTIFY_URL"] = dev_notify_url(settings)
        sandbox = subprocess.Popen(_sandbox_cmd(settings), env=env)  # noqa: S603
        children.append(sandbox)
        sandbox_url = f"http://{settings.sandbox_host}:{settings.sandbox_port}"
        _wait_http(f"{sandbox_url}/_control/health", 180, sandbox)
        _sync_catalogue(env)
        children.append(subprocess.Popen([sys.executable, "-m", "bff.cli", "worker"], env=env))
        api = subprocess.Popen([sys.executable, "-m", "bff.cli", "serve"], env=env)
        children.append(api)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        _wait_http(f"{api_url}/readyz", 60, api)
        bridge, kiosk_line = _demo_kiosk(settings, env, api_url, sandbox_url)
        if bridge is not None:
            extras.append(bridge)
        print(_banner(settings, env, api_url, sandbox_url) + kiosk_line, flush=True)  # noqa: T201
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a component stopped; shutting down", file=sys.stderr)  # noqa: T201
    except KeyboardInterrupt:
        pass
    finally:
        children = children + extras
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in reversed(children):
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()


DEMO_KIOSK = "kiosk-demo-01"


def _demo_kiosk(
    settings: Settings, env: dict[str, str], api_url: str, sandbox_url: str
) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The kiosk web app's demo: the simulated device bridge on KIOSK_BRIDGE_URL with a key kept in
    the data folder, registered as staff would, and a fresh level-3 resident's card in its reader.
    A bridge that cannot start (its port taken) costs only this line of the banner."""
    import base64
    import json
    from urllib.parse import urlsplit

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    port = urlsplit(settings.kiosk_bridge_url).port or 8765
    bridge_url = f"http://127.0.0.1:{port}"
    key_file = Path(settings.data_dir) / f"{DEMO_KIOSK}.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        raw = Ed25519PrivateKey.generate().private_bytes_raw()
        key_file.write_bytes(base64.b64encode(raw))
        key_file.chmod(0o600)
    cmd = [sys.executable, "-m", "sandbox.kiosk_bridge", "--port", str(port), "--kiosk-id", DEMO_KIOSK]
    cmd += ["--allow-origin", api_url, "--key-file", str(key_file)]
    bridge = subprocess.Popen(cmd, env=env)  # noqa: S603
    try:
        _wait_http(f"{bridge_url}/bridge/status", 20, bridge)

        def call(method: str, url: str, body: object | None = None) -> dict[str, str]:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(  # noqa: S310 - our loopback URLs
                url, data=data, method=method, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                result: dict[str, str] = json.loads(response.read())
                return result

        public_key = call("GET", f"{bridge_url}/_control/public-key")["publicKey"]
        asyncio.run(_register_demo_kiosk(env, base64.b64decode(public_key)))
        resident = call("POST", f"{sandbox_url}/_control/idp/residents", {"level": 3})
        card = {"name": resident["name"], "idNumber": resident["id_card_number"]}
        call("PUT", f"{bridge_url}/_control/card", card)
    except (OSError, RuntimeError, ValueError) as exc:
        if bridge.poll() is None:
            bridge.terminate()
        return (
            None,
            f"  kiosk      not started ({type(exc).__name__}: {exc}); see README 'The kiosk web app'\n",
        )
    return bridge, (
        f"  kiosk      {api_url}/kiosk/?bridge={bridge_url}\n"
        f"             (simulated device bridge; a demo ID card is in its reader: tap 开始识别)\n"
    )


async def _register_demo_kiosk(env: dict[str, str], public_key: bytes) -> None:
    """Register the demo kiosk's key through the same use case staff call (audited), once."""
    from adapters.errors import ProblemError
    from auth import kiosks
    from auth.principal import Principal
    from bff.wiring import open_root

    staff = Principal(person_id="staff:dev", channel="staff", level=3, session_id="dev", jti="dev")
    async with open_root(load_settings(env, dotenv=None)) as root:
        with contextlib.suppress(ProblemError):  # kiosk_exists: registered by an earlier `dev`
            await kiosks.register(
                root.auth,
                staff,
                kiosk_id=DEMO_KIOSK,
                name="演示自助终端",
                hall_id="hall-430102-01",
                algorithm="ed25519",
                public_key=public_key,
            )


def _sync_catalogue(env: dict[str, str]) -> None:
    """Fill the catalogue mirror before the API starts, so search works from the first request."""
    from bff.wiring import open_root

    async def sync() -> SyncReport:
        async with open_root(load_settings(env, dotenv=None)) as root:
            return await root.catalogue_sync.run()

    print("syncing the service catalogue into the mirror ...", flush=True)  # noqa: T201
    report = asyncio.run(sync())
    summary = f"{report.mode} sync, {report.entries_seen} entries read, {report.entries_changed} changed"
    print(f"catalogue: {summary}")  # noqa: T201


def _banner(settings: Settings, env: dict[str, str], api_url: str, sandbox_url: str) -> str:
    from bff.demo import DEMO_RESIDENT, DemoLoginFailed, demo_login

    try:
        tokens = demo_login(api_url, env["IDP_URL"], settings.idp_client_id)
        login = (
            f"demo resident {DEMO_RESIDENT} (张三, real-name level 3) is logged in through the app channel:\n"
            f"  curl -H 'Authorization: Bearer {tokens['accessToken']}' {api_url}/api/v1/me\n"
            f"  (the token lives 10 minutes; README 'Logging in as a demo resident' shows every channel)"
        )
    except DemoLoginFailed as exc:
        login = f"demo login failed: {exc}; see README 'Logging in as a demo resident'"
    except (OSError, ValueError, KeyError) as exc:
        login = f"demo login failed ({type(exc).__name__}); see README 'Logging in as a demo resident'"
    return f"""
Sanxiang BFF is running (Ctrl-C stops everything).
  API        {api_url}/api/v1   (OpenAPI: {api_url}/schema/openapi.json)
  health     {api_url}/healthz  {api_url}/readyz  {api_url}/metrics
  sandbox    {sandbox_url}      (upstream simulations; control API under /_control)
  try        curl {_sample_item(sandbox_url, api_url)}
             curl '{api_url}/api/v1/items?q=shengyu&region=430102'   (search: pinyin, 俗称, 繁體, typos)
  log in     {login}
"""


def _sample_item(sandbox_url: str, api_url: str) -> str:
    """A real item code to show in the banner, asked of the item library itself."""
    import json

    code = "<code>"
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        with urllib.request.urlopen(f"{sandbox_url}/catalogue/items?limit=1", timeout=2) as response:  # noqa: S310
            code = str(json.load(response)["items"][0]["catalog_code"])
    return f"{api_url}/api/v1/items/{code}"


COMMANDS = {
    "serve": cmd_serve,
    "worker": cmd_worker,
    "sandbox": cmd_sandbox,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "dev": cmd_dev,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sanxiang", description="Sanxiang BFF")
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    COMMANDS[args.command](_settings())


if __name__ == "__main__":
    main()
