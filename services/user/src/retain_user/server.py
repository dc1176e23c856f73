"""Assembly of the user service: database, domain objects and gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from retain.user.v1 import user_pb2_grpc
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.server import RunningServer, create_server
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_user import ext_authz
from retain_user.admin_store import AdminStore
from retain_user.admins import AdminDirectory
from retain_user.api_key_store import ApiKeyStore
from retain_user.api_keys import ApiKeys
from retain_user.consent import ConsentLedger
from retain_user.crypto import DataCipher
from retain_user.customers import CustomerDirectory
from retain_user.ext_authz import GatewayAuthorization, RateLimiter
from retain_user.passwords import Passwords
from retain_user.policy import POLICY, SERVICE_NAME
from retain_user.servicer import Accounts, UserServicer
from retain_user.settings import UserSettings
from retain_user.sign_in import SignInChecker
from retain_user.signing_keys import SigningKeys
from retain_user.store import UserStore
from retain_user.token_store import TokenStore
from retain_user.tokens import TokenIssuer
from retain_user.validators import build_validators

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def prepare_database(url: str) -> None:
    """Create the database if needed and apply every migration; call before start."""
    db.ensure_database(url)
    db.migrate(url, MIGRATIONS_DIR)


@dataclass
class Service:
    """A running user service: its gRPC servers and its database engine."""

    running: RunningServer
    engine: AsyncEngine
    # accounts verifies access tokens and API keys for in-process callers.
    accounts: Accounts

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving, let calls in flight finish, then close the database pool."""
        await self.running.stop(grace)
        await self.engine.dispose()
        log.info("User service stopped")


async def start(
    settings: UserSettings,
    clock: Clock,
    wall_clock: Clock | None = None,
    passwords: Passwords | None = None,
) -> Service:
    """Start the user service on a migrated database.

    wall_clock times access tokens and defaults to real time, because Envoy
    checks their iat and exp against real time even when clock has an offset.
    passwords defaults to argon2id with production parameters; tests may
    pass cheaper ones.
    """
    engine = db.async_engine(settings.database_url)
    store = UserStore(engine)
    cipher = DataCipher(settings.data_key)
    accounts = _accounts(
        engine,
        settings,
        cipher,
        passwords or Passwords(),
        clock,
        wall_clock or Clock(),
    )
    servicer = UserServicer(
        CustomerDirectory(store, cipher, clock),
        ConsentLedger(store, cipher, clock),
        accounts,
    )

    # Envoy's ext_authz filter calls Check on this server for the session of
    # each access token and for API keys.
    authorization = GatewayAuthorization(
        accounts.tokens, accounts.api_keys, RateLimiter()
    )

    def register(server: grpc.aio.Server) -> None:
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
            authorization, server
        )

    policy = POLICY.union(ext_authz.POLICY)
    running = await create_server(
        settings, SERVICE_NAME, register, policy, build_validators(clock)
    )
    return Service(running=running, engine=engine, accounts=accounts)


def _accounts(
    engine: AsyncEngine,
    settings: UserSettings,
    cipher: DataCipher,
    passwords: Passwords,
    clock: Clock,
    wall_clock: Clock,
) -> Accounts:
    """Build the domain objects of admins, tokens and API keys."""
    admin_store = AdminStore(engine)
    token_store = TokenStore(engine)
    admins = AdminDirectory(admin_store, cipher, passwords, clock)
    signing_keys = SigningKeys(token_store, cipher, clock)
    ttl_seconds = (
        settings.access_token_ttl_seconds,
        settings.refresh_token_ttl_seconds,
    )
    return Accounts(
        admins=admins,
        sign_in=SignInChecker(admin_store, admins, passwords, clock),
        tokens=TokenIssuer(token_store, signing_keys, clock, wall_clock, ttl_seconds),
        signing_keys=signing_keys,
        api_keys=ApiKeys(ApiKeyStore(engine), clock),
    )
