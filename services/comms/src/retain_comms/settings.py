"""Settings of the comms server and its worker, read once at process start.

Both processes read the same variables: the base ServiceSettings (port,
database, certificates, peers, clock) plus Redis, Africa's Talking (SMS and
voice) and the timings of the sweeper.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from retain_runtime.errors import SettingsError
from retain_runtime.money import MICROS
from retain_runtime.settings import Env, ServiceSettings

DEFAULT_AT_BASE_URL = "https://api.africastalking.com"
DEFAULT_AT_VOICE_BASE_URL = "https://voice.africastalking.com"
DEFAULT_SEND_BATCH = 100
# A request started at a batch's deadline makes at most three attempts of
# AT_TIMEOUT_SECONDS with backoff between them, so with these two bounds a
# batch ends inside the actor's time limit (SEND_OPTIONS in actors.py).
DEFAULT_BATCH_SEND_SECONDS = 60.0
# Seconds a batch waits at most for send tokens before it claims anything.
# Past that, SendRateBusy ends the batch and Dramatiq retries it later.
RATE_WAIT_SECONDS = 30.0
MAX_AT_TIMEOUT_SECONDS = 15.0
# GetContacts takes at most 1000 customer ids, so a batch is at most that.
MAX_SEND_BATCH = 1000
# NOTE: AT publishes no per-account send rate; this default is a guess. Set
# AT_SEND_RATE_PER_SECOND to the rate agreed with AT for the account.
DEFAULT_SEND_RATE = 1000.0


@dataclass(frozen=True)
class CommsSettings:
    """Everything the comms server and the worker read from the environment."""

    service: ServiceSettings
    redis_url: str = field(repr=False)
    # queue_namespace prefixes every Redis key of the Dramatiq broker.
    queue_namespace: str
    at_base_url: str
    at_username: str
    at_api_key: str = field(repr=False)
    at_sender_id: str
    at_callback_secret: str = field(repr=False)
    at_unit_price_micros: int
    at_timeout_seconds: float
    at_low_balance_micros: int
    worker_threads: int
    sweep_interval_seconds: float
    requeue_after_seconds: float
    sending_timeout_seconds: float
    report_window_seconds: float
    # at_voice_base_url is the host of AT's voice API, apart from the SMS API;
    # it defaults to AT_BASE_URL when that is the emulator on this machine.
    at_voice_base_url: str = DEFAULT_AT_VOICE_BASE_URL
    # at_voice_number is the AT phone number voice calls come from, in E.164;
    # empty means no calls can be placed.
    at_voice_number: str = ""
    # send_batch_size is the number of message ids one queue message carries.
    send_batch_size: int = DEFAULT_SEND_BATCH
    # at_send_rate_per_second caps recipients per second across all workers.
    at_send_rate_per_second: float = DEFAULT_SEND_RATE
    # at_voice_call_price_micros is the budget a launch reserves per call.
    at_voice_call_price_micros: int = 3 * MICROS
    # batch_send_seconds is how long after its start a batch may start
    # provider requests; see SEND_OPTIONS in actors.py.
    batch_send_seconds: float = DEFAULT_BATCH_SEND_SECONDS

    @property
    def at_is_loopback(self) -> bool:
        """Whether AT_BASE_URL names this machine, as the emulator does."""
        return _is_loopback(self.at_base_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CommsSettings:
        env = Env(environ)
        at_base_url = _base_url(env.str("AT_BASE_URL", DEFAULT_AT_BASE_URL))
        # The emulator serves the voice API too, so a local stack never calls
        # the real voice host by default.
        voice_default = (
            at_base_url if _is_loopback(at_base_url) else DEFAULT_AT_VOICE_BASE_URL
        )
        settings = cls(
            service=ServiceSettings.from_env("comms", environ),
            redis_url=env.str("RETAIN_REDIS_URL", "redis://127.0.0.1:6379/0"),
            queue_namespace=env.str("RETAIN_COMMS_QUEUE_NAMESPACE", "retain-comms"),
            at_base_url=at_base_url,
            at_username=_required(env, "AT_USERNAME"),
            at_api_key=_required(env, "AT_API_KEY"),
            at_sender_id=env.str("AT_SENDER_ID", ""),
            at_callback_secret=_required(env, "RETAIN_AT_CALLBACK_SECRET"),
            at_unit_price_micros=_kes(env, "AT_UNIT_PRICE_KES", "0.8"),
            at_timeout_seconds=_at_timeout(env),
            at_low_balance_micros=_kes(env, "AT_LOW_BALANCE_KES", "100"),
            worker_threads=int(_positive(env, "RETAIN_WORKER_THREADS", 8)),
            sweep_interval_seconds=_positive(env, "RETAIN_COMMS_SWEEP_SECONDS", 5.0),
            requeue_after_seconds=_positive(env, "RETAIN_COMMS_REQUEUE_SECONDS", 60.0),
            sending_timeout_seconds=_positive(
                env, "RETAIN_COMMS_SENDING_TIMEOUT_SECONDS", 300.0
            ),
            report_window_seconds=3600
            * _positive(env, "RETAIN_COMMS_REPORT_WINDOW_HOURS", 48.0),
            at_voice_base_url=_base_url(
                env.str("AT_VOICE_BASE_URL", voice_default) or voice_default,
                "AT_VOICE_BASE_URL",
                DEFAULT_AT_VOICE_BASE_URL,
            ),
            at_voice_number=env.str("AT_VOICE_NUMBER", ""),
            send_batch_size=_batch_size(env),
            at_send_rate_per_second=_positive(
                env, "AT_SEND_RATE_PER_SECOND", DEFAULT_SEND_RATE
            ),
            # NOTE: AT bills a call per started minute at a price that depends
            # on the network, so 3 KES is an estimate for a call under a minute.
            at_voice_call_price_micros=_kes(env, "AT_VOICE_CALL_PRICE_KES", "3"),
        )
        _check_rate_covers_batch(settings)
        return settings


def _check_rate_covers_batch(settings: CommsSettings) -> None:
    """Raise SettingsError unless a full batch's send tokens refill within the
    wait a batch allows for them."""
    refill = settings.send_batch_size / settings.at_send_rate_per_second
    if refill > RATE_WAIT_SECONDS:
        raise SettingsError(
            "AT_SEND_RATE_PER_SECOND",
            f'"{settings.at_send_rate_per_second:g}" refills a batch of '
            f"{settings.send_batch_size} (RETAIN_COMMS_SEND_BATCH) in {refill:g} s, "
            f"over the {RATE_WAIT_SECONDS:g} s a batch waits for send tokens; raise "
            "the rate or lower RETAIN_COMMS_SEND_BATCH",
        )


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _required(env: Env, name: str) -> str:
    value = env.str(name, "")
    if not value:
        raise SettingsError(name, "is not set; export it or use `retain up`")
    return value


def _base_url(
    value: str, name: str = "AT_BASE_URL", example: str = DEFAULT_AT_BASE_URL
) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(name, f'"{value}" is not an http(s) URL such as {example}')
    return value.rstrip("/")


def _kes(env: Env, name: str, default: str) -> int:
    raw = env.str(name, default) or default
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise SettingsError(name, f'"{raw}" is not an amount in KES') from None
    if not amount.is_finite() or amount < 0:
        raise SettingsError(name, f'"{raw}" must be an amount of 0 KES or more')
    return int(amount * MICROS)


def _batch_size(env: Env) -> int:
    name = "RETAIN_COMMS_SEND_BATCH"
    value = env.int(name, DEFAULT_SEND_BATCH)
    if not 1 <= value <= MAX_SEND_BATCH:
        raise SettingsError(name, f'"{value}" must be from 1 to {MAX_SEND_BATCH}')
    return value


def _at_timeout(env: Env) -> float:
    name = "AT_TIMEOUT_SECONDS"
    value = _positive(env, name, 10.0)
    if not value <= MAX_AT_TIMEOUT_SECONDS:
        raise SettingsError(
            name,
            f'"{value:g}" must be at most {MAX_AT_TIMEOUT_SECONDS:g}, so that a '
            "batch of sends ends within its time limit",
        )
    return value


def _positive(env: Env, name: str, default: float) -> float:
    value = env.float(name, default)
    if not 0 < value < math.inf:
        raise SettingsError(name, f'"{value:g}" must be a number greater than 0')
    return value
