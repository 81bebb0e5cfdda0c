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


HOTLINE_KEYS = {"HOTLINE_CHANNEL_KEY": "h", "HOTLINE_WEBHOOK_SECRET": "hs"}
PUSH_KEYS = {"PUSHGW_APP_KEY": "a", "PUSHGW_SECRET": "p", "SMS_ACCESS_KEY_ID": "k", "SMS_SECRET": "s"}
# The e-licence library's client secret and the key that signs shown licences (亮证).
LICENCE_KEYS = {"ELICENCE_SECRET": "e", "LICENCE_SHOW_KEY": "l"}


def test_prod_refuses_the_sandbox_secrets() -> None:
    keys = {
        "ENV": "prod",
        "AUTH_SIGNING_KEYS": "k1:AAAA",
        "AUTH_ACTIVE_KID": "k1",
        "PII_KEYS": "p1:AAAA",
        "PII_ACTIVE_KEY": "p1",
        "PII_INDEX_KEY": "secret-index-key",
        "AUDIT_ANCHOR_KEY": "c2VjcmV0LWFuY2hvci1rZXk=",
        "CURSOR_KEY": "secret-cursor-key",
        "LICENCE_SHOW_KEY": "secret-licence-show-key",
    }
    with pytest.raises(SettingsError, match="WECHAT_SECRET"):
        load_settings(keys, None)
    real = {**keys, "WECHAT_SECRET": "w", "IDP_CLIENT_SECRET": "i", "CASE_WEBHOOK_SECRET": "c"}
    # WeChat Pay: the sandbox's APIv3 key and the dev merchant key (the empty file setting) too.
    with pytest.raises(SettingsError, match="WECHATPAY_APIV3_KEY"):
        load_settings(real, None)
    real["WECHATPAY_APIV3_KEY"] = "0123456789abcdef0123456789abcdef"
    with pytest.raises(SettingsError, match="COURIER_WEBHOOK_SECRET"):
        load_settings(real, None)
    real["COURIER_WEBHOOK_SECRET"] = "k"
    # 12345: this channel's access key and the webhook secret, each by name.
    for name in HOTLINE_KEYS:
        with pytest.raises(SettingsError, match=name):
            load_settings({**real, **{k: v for k, v in HOTLINE_KEYS.items() if k != name}}, None)
    real.update(HOTLINE_KEYS)
    # The push providers' sandbox keys are refused too, each by name.
    for name in PUSH_KEYS:
        with pytest.raises(SettingsError, match=name):
            load_settings({**real, **{k: v for k, v in PUSH_KEYS.items() if k != name}}, None)
    real.update(PUSH_KEYS)
    with pytest.raises(SettingsError, match="ELICENCE_SECRET"):
        load_settings(real, None)
    real["ELICENCE_SECRET"] = "e"
    with pytest.raises(SettingsError, match="WECHATPAY_MERCHANT_KEY_FILE"):
        load_settings(real, None)
    real["WECHATPAY_MERCHANT_KEY_FILE"] = "/run/secrets/wechatpay_key.pem"
    assert load_settings(real, None).env == "prod"


def test_prod_requires_a_cursor_key() -> None:
    """Cursors signed with the dev seed's key could be forged by anyone who reads this repository."""
    keys = {
        "ENV": "prod",
        "AUTH_SIGNING_KEYS": "k1:AAAA",
        "AUTH_ACTIVE_KID": "k1",
        "PII_KEYS": "p1:AAAA",
        "PII_ACTIVE_KEY": "p1",
        "PII_INDEX_KEY": "secret-index-key",
        "AUDIT_ANCHOR_KEY": "c2VjcmV0LWFuY2hvci1rZXk=",
        "WECHAT_SECRET": "w",
        "IDP_CLIENT_SECRET": "i",
        "CASE_WEBHOOK_SECRET": "c",
        "WECHATPAY_APIV3_KEY": "0123456789abcdef0123456789abcdef",
        "WECHATPAY_MERCHANT_KEY_FILE": "/run/secrets/wechatpay_key.pem",
        "COURIER_WEBHOOK_SECRET": "k",
        **HOTLINE_KEYS,
        **PUSH_KEYS,
        **LICENCE_KEYS,
    }
    with pytest.raises(SettingsError, match="CURSOR_KEY"):
        load_settings(keys, None)
    assert load_settings({**keys, "CURSOR_KEY": "k"}, None).cursor_key == "k"
