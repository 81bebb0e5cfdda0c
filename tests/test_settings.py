"""Settings are validated at start; a bad value names its variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bff.platform.settings import SettingsError, load_settings


def test_defaults_and_types_convert() -> None:
    settings = load_settings(
        {"API_PORT": "9000", "LOG_JSON": "false", "CORS_ORIGINS": "https://a, https://b"}, None
    )
    assert settings.api_port == 9000
    assert settings.log_json is False
    assert settings.cors_origins == ["https://a", "https://b"]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"API_PORT": "eighty"}, "API_PORT"),
        ({"API_PORT": "70000"}, "API_PORT"),
        ({"DATABASE_URL": "localhost:5432"}, "DATABASE_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"BREAKER_FAILURE_RATE": "2"}, "BREAKER_FAILURE_RATE"),
    ],
)
def test_bad_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env, None)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nAPI_PORT=8123\nSANDBOX_PORT='8124'\n")
    settings = load_settings({"SANDBOX_PORT": "8200"}, dotenv)
    assert settings.api_port == 8123
    assert settings.sandbox_port == 8200


def test_cli_stops_with_a_message_not_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bff.cli", "migrate"],
        env={"API_PORT": "nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "API_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_prod_refuses_the_sandbox_secrets() -> None:
    keys = {
        "ENV": "prod",
        "AUTH_SIGNING_KEYS": "k1:AAAA",
        "AUTH_ACTIVE_KID": "k1",
        "PII_KEYS": "p1:AAAA",
        "PII_ACTIVE_KEY": "p1",
        "PII_INDEX_KEY": "secret-index-key",
    }
    with pytest.raises(SettingsError, match="WECHAT_SECRET"):
        load_settings(keys, None)
    real = {**keys, "WECHAT_SECRET": "w", "IDP_CLIENT_SECRET": "i", "CASE_WEBHOOK_SECRET": "c"}
    # The push providers' sandbox keys are refused too, each by name.
    push = {"PUSHGW_APP_KEY": "a", "PUSHGW_SECRET": "p", "SMS_ACCESS_KEY_ID": "k", "SMS_SECRET": "s"}
    for name in push:
        with pytest.raises(SettingsError, match=name):
            load_settings({**real, **{k: v for k, v in push.items() if k != name}}, None)
    real.update(push)
    assert load_settings(real, None).env == "prod"
