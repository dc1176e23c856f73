"""Settings of the user service: the shared ones plus the data key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from retain_runtime.errors import SettingsError
from retain_runtime.settings import Env, ServiceSettings

from retain_user.crypto import DataCipher

DATA_KEY_VARIABLE = "RETAIN_USER_DATA_KEY"


@dataclass(frozen=True)
class UserSettings(ServiceSettings):
    """ServiceSettings plus the Fernet key that encrypts phone numbers and names."""

    data_key: str = field(repr=False)

    @classmethod
    def from_env(
        cls, name: str = "user", environ: Mapping[str, str] | None = None
    ) -> UserSettings:
        base = ServiceSettings.from_env(name, environ)
        data_key = Env(environ).str(DATA_KEY_VARIABLE)
        try:
            DataCipher(data_key)
        except ValueError as error:
            raise SettingsError(DATA_KEY_VARIABLE, str(error)) from None
        shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        return cls(**shared, data_key=data_key)
