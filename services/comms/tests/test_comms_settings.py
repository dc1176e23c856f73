"""Settings: defaults, errors that name the variable, hidden secrets."""

from __future__ import annotations

import pytest
from retain_comms.settings import CommsSettings
from retain_runtime.errors import SettingsError

BASE = {
    "RETAIN_COMMS_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/comms",
    "AT_USERNAME": "sandbox",
    "AT_API_KEY": "key-that-must-not-show",
    "RETAIN_AT_CALLBACK_SECRET": "secret-that-must-not-show",
}


def test_defaults_point_at_the_real_service() -> None:
    settings = CommsSettings.from_env(BASE)

    assert settings.at_base_url == "https://api.africastalking.com"
    assert settings.at_unit_price_micros == 800_000
    assert not settings.at_is_loopback


def test_repr_hides_secrets() -> None:
    text = repr(CommsSettings.from_env(BASE))

    assert "key-that-must-not-show" not in text
    assert "secret-that-must-not-show" not in text


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8090", "http://localhost:8090/", "http://[::1]:80"]
)
def test_emulator_urls_are_loopback(url: str) -> None:
    settings = CommsSettings.from_env({**BASE, "AT_BASE_URL": url})

    assert settings.at_is_loopback


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AT_API_KEY", ""),
        ("RETAIN_AT_CALLBACK_SECRET", ""),
        ("AT_BASE_URL", "api.africastalking.com"),
        ("AT_UNIT_PRICE_KES", "eighty cents"),
        ("RETAIN_WORKER_THREADS", "0"),
        ("AT_TIMEOUT_SECONDS", "30"),
        ("AT_SEND_RATE_PER_SECOND", "2"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        CommsSettings.from_env({**BASE, variable: value})

    assert caught.value.variable == variable


def test_voice_defaults_to_real_voice_host() -> None:
    settings = CommsSettings.from_env(BASE)

    assert settings.at_voice_base_url == "https://voice.africastalking.com"
    assert settings.at_voice_number == ""


def test_voice_follows_emulator_base_url() -> None:
    settings = CommsSettings.from_env({**BASE, "AT_BASE_URL": "http://127.0.0.1:8090/"})

    assert settings.at_voice_base_url == "http://127.0.0.1:8090"


def test_invalid_voice_url_names_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        CommsSettings.from_env({**BASE, "AT_VOICE_BASE_URL": "voice.africastalking"})

    assert "AT_VOICE_BASE_URL" in str(caught.value)
