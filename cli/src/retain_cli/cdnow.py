"""The CDNOW master transaction log, as shipped inside the lifetimes wheel.

23,570 customers who first bought at CDNOW in the first quarter of 1997 and
their 69,659 purchase rows through 1998-06-30. Dates carry no time, so each
purchase is placed at 12:00 Africa/Nairobi. Amounts are US dollars; the demo
converts them to KES at USD_TO_KES and keeps the dollar amount as an
attribute.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from retain_runtime.clock import NAIROBI

# One fixed rate so runs are comparable: KES per USD, roughly the 2024 average.
USD_TO_KES = Decimal("129.00")

CALIBRATION_START = dt.datetime(1997, 1, 1, tzinfo=NAIROBI)
CALIBRATION_END = dt.datetime(1997, 10, 1, tzinfo=NAIROBI)
HOLDOUT_END = dt.datetime(1998, 7, 1, tzinfo=NAIROBI)


@dataclass(frozen=True)
class Purchase:
    """One row of the log."""

    row: int
    customer: int
    occur_time: dt.datetime
    cds: int
    usd: Decimal


def log_path() -> Path:
    """Return the log's path inside the installed lifetimes package.

    Importing lifetimes.datasets fails on current setuptools, so the file is
    located without importing the package.
    """
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lifetimes package is not installed; run `make install`")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "CDNOW_master.txt"


def read_purchases(path: Path | None = None) -> list[Purchase]:
    """Parse every row of the log, in file order."""
    purchases = []
    with open(path or log_path()) as source:
        next(source)
        for row, line in enumerate(source, start=1):
            customer, day, cds, usd = line.split()
            date = dt.datetime.strptime(day, "%Y%m%d")
            occur = date.replace(hour=12, tzinfo=NAIROBI)
            purchases.append(Purchase(row, int(customer), occur, int(cds), Decimal(usd)))
    return purchases
