"""Command line: run the AT emulator until SIGTERM or SIGINT.

    python -m retain_emulator --port 8090 --username sandbox --api-key KEY \
        --callback-url http://127.0.0.1:9000/dlr
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from types import FrameType

from retain_emulator.server import AfricasTalkingEmulator

logger = logging.getLogger("retain_emulator")

API_KEY_ENV = "AT_API_KEY"
CALLBACK_URL_ENV = "RETAIN_EMULATOR_CALLBACK_URL"
VOICE_CALLBACK_URL_ENV = "RETAIN_EMULATOR_VOICE_CALLBACK_URL"


def decimal_argument(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as error:
        raise argparse.ArgumentTypeError(
            f"invalid amount {text!r}: expected a decimal number of 0 or more"
        ) from error
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(
            f"invalid amount {text!r}: expected a decimal number of 0 or more"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retain_emulator",
        description="Serve Africa's Talking's SMS and voice APIs on loopback.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8090,
        help="TCP port, 0 for any free port (default: %(default)s)",
    )
    parser.add_argument(
        "--username",
        default="sandbox",
        help="AT username that requests must send (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=(
            f"apiKey header value that requests must send (default: ${API_KEY_ENV}); "
            "prefer the variable, because other local users can read arguments"
        ),
    )
    parser.add_argument(
        "--callback-url",
        default=os.environ.get(CALLBACK_URL_ENV),
        help=(
            f"URL that delivery reports are POSTed to (default: ${CALLBACK_URL_ENV}, "
            "else no reports); prefer the variable when the URL carries a secret"
        ),
    )
    parser.add_argument(
        "--voice-callback-url",
        default=os.environ.get(VOICE_CALLBACK_URL_ENV),
        help=(
            "URL that voice callbacks of placed calls are POSTed to (default: "
            f"${VOICE_CALLBACK_URL_ENV}, else no callbacks)"
        ),
    )
    parser.add_argument(
        "--balance",
        type=decimal_argument,
        default="1000",
        help="starting balance in --currency (default: %(default)s)",
    )
    parser.add_argument(
        "--currency",
        default="KES",
        help="currency code of costs and balance (default: %(default)s)",
    )
    parser.add_argument(
        "--cost-per-segment",
        type=decimal_argument,
        default="0.8000",
        help="cost of one SMS part in --currency (default: %(default)s)",
    )
    parser.add_argument(
        "--report-delay",
        type=float,
        default=0.05,
        help="seconds between a send and its first delivery report (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error(f"missing API key: pass --api-key or set ${API_KEY_ENV}")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every callback POST with its full URL at INFO, so below DEBUG
    # only its warnings pass.
    if args.log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)

    emulator = AfricasTalkingEmulator(
        args.username,
        args.api_key,
        args.callback_url,
        host=args.host,
        port=args.port,
        balance=args.balance,
        currency=args.currency,
        cost_per_segment=args.cost_per_segment,
        report_delay=args.report_delay,
        voice_callback_url=args.voice_callback_url,
    )
    stop_requested = threading.Event()

    def request_stop(signal_number: int, _frame: FrameType | None) -> None:
        logger.info("Received %s, stopping", signal.Signals(signal_number).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    emulator.start()
    try:
        while not stop_requested.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
