"""`retain demo` saves its clock and `retain up` continues from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from retain_cli.main import CLOCK_FILE, _save_clock, _saved_clock


def test_saved_demo_clock_is_read_back(tmp_path: Path) -> None:
    _save_clock(tmp_path, -927_000_000.5)
    assert _saved_clock(tmp_path) == -927_000_000.5


def test_no_saved_clock_means_real_time(tmp_path: Path) -> None:
    assert _saved_clock(tmp_path) == 0.0


def test_damaged_clock_file_names_itself_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / CLOCK_FILE).write_text('{"offset": 3}')
    with pytest.raises(typer.BadParameter, match=rf"{CLOCK_FILE}.*delete it"):
        _saved_clock(tmp_path)
