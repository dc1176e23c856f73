"""Settings of the user service: the shared ones, the data key and token lifetimes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from retain_runtime.errors import SettingsError
from retain_runtime.settings import Env, ServiceSettings

from retain_user.crypto import DataCipher

DATA_KEY_VARIABLE = "RETAIN_USER_DATA_KEY"
ACCESS_TTL_VARIABLE = "RETAIN_USER_ACCESS_TOKEN_TTL_SECONDS"
REFRESH_TTL_VARIABLE = "RETAIN_USER_REFRESH_TOKEN_TTL_SECONDS"

DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 15 * 60
DEFAULT_REFRESH_TOKEN_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class UserSettings(ServiceSettings):
    """ServiceSettings plus the Fernet key that encrypts phone numbers, names
    and signing keys, and the lifetimes of admin tokens in seconds."""

    data_key: str = field(repr=False)
    access_token_ttl_seconds: int = DEFAULT_ACCESS_TOKEN_TTL_SECONDS
    refresh_token_ttl_seconds: int = DEFAULT_REFRESH_TOKEN_TTL_SECONDS

    @classmethod
    def from_env(
        cls, name: str = "user", environ: Mapping[str, str] | None = None
    ) -> UserSettings:
        base = ServiceSettings.from_env(name, environ)
        env = Env(environ)
        data_key = env.str(DATA_KEY_VARIABLE)
        try:
            DataCipher(data_key)
        except ValueError as error:
            raise SettingsError(DATA_KEY_VARIABLE, str(error)) from None
        shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        return cls(
            **shared,
            data_key=data_key,
            access_token_ttl_seconds=_positive_seconds(
                env, ACCESS_TTL_VARIABLE, DEFAULT_ACCESS_TOKEN_TTL_SECONDS
            ),
            refresh_token_ttl_seconds=_positive_seconds(
                env, REFRESH_TTL_VARIABLE, DEFAULT_REFRESH_TOKEN_TTL_SECONDS
            ),
        )


def _positive_seconds(env: Env, variable: str, default: int) -> int:
    seconds = env.int(variable, default)
    if seconds <= 0:
        raise SettingsError(
            variable, f"{seconds} is not a positive number of seconds; try {default}"
        )
    return seconds
