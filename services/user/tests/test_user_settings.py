"""Settings, the data key and the `python -m retain_user` entry point."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest
from cryptography.fernet import Fernet
from retain_runtime.errors import SettingsError
from retain_user import load_or_create_data_key
from retain_user.crypto import DataCipher
from retain_user.settings import UserSettings


def environment(data_key: str) -> dict[str, str]:
    return {
        "RETAIN_USER_DATABASE_URL": "postgresql+psycopg://unused/db",
        "RETAIN_USER_DATA_KEY": data_key,
    }


def test_data_key_hidden_from_repr(data_key: str) -> None:
    settings = UserSettings.from_env("user", environment(data_key))
    assert settings.data_key == data_key
    assert data_key not in repr(settings)
    assert data_key not in repr(DataCipher(data_key))


def test_missing_data_key_names_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        UserSettings.from_env("user", {"RETAIN_USER_DATABASE_URL": "unused"})
    assert caught.value.variable == "RETAIN_USER_DATA_KEY"


@pytest.mark.parametrize("bad_key", ["", "short", "QUJD" * 4, "!" * 44])
def test_invalid_data_key_rejected(bad_key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        UserSettings.from_env("user", environment(bad_key))
    assert caught.value.variable == "RETAIN_USER_DATA_KEY"
    assert "Fernet key" in str(caught.value)


def test_data_key_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "user-data.key"

    first = load_or_create_data_key(path)
    second = load_or_create_data_key(path)

    assert first == second
    assert path.stat().st_mode & 0o777 == 0o600
    assert DataCipher(first).decrypt(DataCipher(second).encrypt("x")) == "x"


def test_corrupt_data_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "user-data.key"
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="not a Fernet key"):
        load_or_create_data_key(path)


def test_phone_hash_depends_on_key() -> None:
    first = DataCipher(Fernet.generate_key().decode())
    second = DataCipher(Fernet.generate_key().decode())
    assert first.phone_hash("+254712345678") == first.phone_hash("+254712345678")
    assert first.phone_hash("+254712345678") != second.phone_hash("+254712345678")


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str]) -> None:
    """Collect log lines until one contains text; fail after 30 seconds of silence."""
    while True:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail(f"no log line containing {text!r}; got:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return


def test_module_entry_point_serves_and_stops(
    database_url: str, cert_dir: Path, data_key: str
) -> None:
    env = {
        **os.environ,
        **environment(data_key),
        "RETAIN_USER_DATABASE_URL": database_url,
        "RETAIN_USER_PORT": "0",
        "RETAIN_CERT_DIR": str(cert_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "retain_user"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stderr, lines))
    reader.start()
    seen: list[str] = []
    try:
        _wait_for(lines, "User service started on port", seen)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
    _wait_for(lines, "User service stopped", seen)
    assert "is at the latest migration" in "".join(seen)
