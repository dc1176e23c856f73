"""Admin sign-in, lockout, tokens, signing keys, API keys and the audit log.

Sign-in and admin RPCs are called the way Envoy calls them: with the envoy
certificate, and with the admin's role as x-retain-role metadata once the
admin has an access token.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from argon2 import profiles
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime.callers import ROLE_HEADER, SUBJECT_HEADER
from retain_runtime.clock import Clock
from retain_runtime.errors import SettingsError, Unauthenticated
from retain_user.passwords import Passwords
from retain_user.server import Service
from retain_user.settings import UserSettings
from retain_user.tables import metadata
from user_helpers import StubFactory, rpc_error

Stub = user_pb2_grpc.UserServiceStub

EMAIL = "amina@example.com"
PASSWORD = "correct horse battery"
WRONG_PASSWORD = "wrong horse battery"


@pytest.fixture
def envoy(connect: StubFactory) -> Stub:
    return connect("envoy")


def as_admin(role: str = "admin", subject: str = EMAIL) -> tuple[tuple[str, str], ...]:
    """Return the metadata Envoy forwards for a verified access token."""
    return ((ROLE_HEADER, role), (SUBJECT_HEADER, subject))


async def create_admin(
    operator: Stub,
    email: str = EMAIL,
    role: int = user_pb2.ROLE_ADMIN,
    phone_number: str = "",
) -> user_pb2.Admin:
    request = user_pb2.CreateAdminRequest(
        email=email, password=PASSWORD, role=role, phone_number=phone_number
    )
    return (await operator.CreateAdmin(request)).admin


async def sign_in(
    envoy: Stub, email: str = EMAIL, password: str = PASSWORD
) -> user_pb2.SignInResponse:
    request = user_pb2.SignInRequest(email=email, password=password)
    response: user_pb2.SignInResponse = await envoy.SignIn(request)
    return response


async def refresh(envoy: Stub, token: str) -> user_pb2.RefreshTokenResponse:
    request = user_pb2.RefreshTokenRequest(refresh_token=token)
    response: user_pb2.RefreshTokenResponse = await envoy.RefreshToken(request)
    return response


async def query(service: Service, statement: Any) -> Sequence[Any]:
    async with service.engine.connect() as connection:
        return (await connection.execute(statement)).all()


async def audit_actions(service: Service) -> list[tuple[str, str, str]]:
    rows = await query(
        service,
        sa.text(
            "SELECT subject, action, target FROM audit_events ORDER BY audit_event_id"
        ),
    )
    return [(row.subject, row.action, row.target) for row in rows]


def decode(token: str, keys: user_pb2.GetSigningKeysResponse) -> dict[str, Any]:
    """Verify an access token against the published JWKS, as Envoy does."""
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [key for key in keys.keys if key.kid == kid]
    jwk = {name: getattr(key, name) for name in ("kty", "crv", "x", "y", "kid")}
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience="retain",
        issuer="retain-user",
    )
    return claims


async def test_sign_in_jwt_verifies_against_jwks(operator: Stub, envoy: Stub) -> None:
    admin = await create_admin(operator)

    response = await sign_in(envoy)
    keys = await envoy.GetSigningKeys(user_pb2.GetSigningKeysRequest())
    claims = decode(response.access_token, keys)
    header = jwt.get_unverified_header(response.access_token)

    assert header["alg"] == "ES256"
    assert header["kid"] == keys.keys[0].kid
    assert claims["iss"] == "retain-user"
    assert claims["aud"] == "retain"
    assert claims["sub"] == EMAIL
    assert claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 900
    assert response.access_token_ttl_seconds == 900
    assert len(claims["jti"]) == 32
    assert claims["sid"]
    assert response.admin.admin_id == admin.admin_id
    assert response.admin.role == user_pb2.ROLE_ADMIN


async def test_jwks_has_p256_signing_key(envoy: Stub) -> None:
    keys = await envoy.GetSigningKeys(user_pb2.GetSigningKeysRequest())

    assert len(keys.keys) == 1
    key = keys.keys[0]
    assert (key.kty, key.crv, key.use, key.alg) == ("EC", "P-256", "sig", "ES256")
    for coordinate in (key.x, key.y):
        assert "=" not in coordinate
        assert len(base64.urlsafe_b64decode(coordinate + "=")) == 32
    assert key.n == key.e == ""


async def test_analyst_token_carries_analyst_role(operator: Stub, envoy: Stub) -> None:
    await create_admin(operator, "sam@example.com", user_pb2.ROLE_ANALYST)

    response = await sign_in(envoy, "sam@example.com")
    keys = await envoy.GetSigningKeys(user_pb2.GetSigningKeysRequest())

    assert decode(response.access_token, keys)["role"] == "analyst"


async def test_verify_access_token_returns_claims(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    response = await sign_in(envoy)

    claims = await user_service.accounts.tokens.verify_access_token(
        response.access_token
    )

    assert claims.subject == EMAIL
    assert claims.role == "admin"


async def test_email_normalised_for_create_and_sign_in(
    operator: Stub, envoy: Stub
) -> None:
    admin = await create_admin(operator, "  Amina@Example.COM ")

    response = await sign_in(envoy, "AMINA@example.com")

    assert admin.email == EMAIL
    assert response.admin.email == EMAIL


async def test_duplicate_email_rejected_whatever_its_case(operator: Stub) -> None:
    await create_admin(operator)

    error = await rpc_error(create_admin(operator, "AMINA@example.com"))

    assert error.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_admin_phone_is_masked(operator: Stub) -> None:
    admin = await create_admin(operator, phone_number="0712345678")

    assert admin.phone_number_masked == "+2547******78"


async def test_wrong_password_and_unknown_email_fail_alike(
    operator: Stub, envoy: Stub
) -> None:
    await create_admin(operator)

    wrong_password = await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))
    unknown_email = await rpc_error(sign_in(envoy, "nobody@example.com"))

    assert wrong_password.code() is grpc.StatusCode.UNAUTHENTICATED
    assert unknown_email.code() is grpc.StatusCode.UNAUTHENTICATED
    assert wrong_password.details() == unknown_email.details()


async def test_five_failures_lock_until_fifteen_minutes_pass(
    operator: Stub, envoy: Stub, clock: Clock
) -> None:
    await create_admin(operator)
    for _ in range(5):
        error = await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED

    locked = await rpc_error(sign_in(envoy))
    listed = await operator.ListAdmins(user_pb2.ListAdminsRequest())
    clock.advance(14 * 60)
    still_locked = await rpc_error(sign_in(envoy))
    clock.advance(60 + 1)
    response = await sign_in(envoy)

    assert locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (locked.details() or "").startswith("account locked until ")
    assert listed.admins[0].HasField("locked_until_time")
    assert still_locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert response.admin.email == EMAIL
    assert not response.admin.HasField("locked_until_time")


async def test_unknown_email_locks_like_known(envoy: Stub) -> None:
    for _ in range(5):
        await rpc_error(sign_in(envoy, "nobody@example.com"))

    error = await rpc_error(sign_in(envoy, "nobody@example.com"))

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_success_resets_failure_count(operator: Stub, envoy: Stub) -> None:
    await create_admin(operator)
    for _ in range(4):
        await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))
    await sign_in(envoy)
    for _ in range(4):
        await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))

    response = await sign_in(envoy)

    assert response.admin.email == EMAIL


async def test_failures_older_than_window_not_counted(
    operator: Stub, envoy: Stub, clock: Clock
) -> None:
    await create_admin(operator)
    for _ in range(4):
        await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))
    clock.advance(15 * 60 + 1)
    await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))

    response = await sign_in(envoy)

    assert response.admin.email == EMAIL


async def test_refresh_rotates_and_old_token_fails(operator: Stub, envoy: Stub) -> None:
    await create_admin(operator)
    first = await sign_in(envoy)

    second = await refresh(envoy, first.refresh_token)
    reused = await rpc_error(refresh(envoy, first.refresh_token))

    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.access_token_ttl_seconds == 900
    assert reused.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_reused_refresh_token_revokes_session(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    first = await sign_in(envoy)
    second = await refresh(envoy, first.refresh_token)

    reused = await rpc_error(refresh(envoy, first.refresh_token))
    latest = await rpc_error(refresh(envoy, second.refresh_token))

    assert "already used" in (reused.details() or "")
    assert latest.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(Unauthenticated, match="revoked"):
        await user_service.accounts.tokens.verify_access_token(second.access_token)


async def test_other_sessions_survive_reuse(operator: Stub, envoy: Stub) -> None:
    await create_admin(operator)
    laptop = await sign_in(envoy)
    phone = await sign_in(envoy)
    await refresh(envoy, laptop.refresh_token)

    await rpc_error(refresh(envoy, laptop.refresh_token))
    response = await refresh(envoy, phone.refresh_token)

    assert response.refresh_token


async def test_sign_out_revokes_session(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    response = await sign_in(envoy)
    request = user_pb2.SignOutRequest(refresh_token=response.refresh_token)

    await envoy.SignOut(request)
    await envoy.SignOut(request)
    error = await rpc_error(refresh(envoy, response.refresh_token))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(Unauthenticated, match="revoked"):
        await user_service.accounts.tokens.verify_access_token(response.access_token)


async def test_refresh_token_expires_after_seven_days(
    operator: Stub, envoy: Stub, clock: Clock
) -> None:
    await create_admin(operator)
    response = await sign_in(envoy)
    clock.advance(7 * 24 * 3600 + 1)

    error = await rpc_error(refresh(envoy, response.refresh_token))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_refresh_token_rejected(envoy: Stub) -> None:
    error = await rpc_error(refresh(envoy, "not-a-token"))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_tampered_access_token_rejected(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    token = (await sign_in(envoy)).access_token
    header, _, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"x"}').decode().rstrip("=")

    with pytest.raises(Unauthenticated):
        await user_service.accounts.tokens.verify_access_token(
            f"{header}.{forged}.{signature}"
        )


async def test_refresh_tokens_stored_only_hashed(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    response = await sign_in(envoy)

    rows = await query(user_service, sa.text("SELECT token_hash FROM refresh_tokens"))

    digest = hashlib.sha256(response.refresh_token.encode()).digest()
    assert [bytes(row.token_hash) for row in rows] == [digest]


async def test_signing_key_rotates_after_thirty_days(
    operator: Stub, envoy: Stub, clock: Clock
) -> None:
    await create_admin(operator)
    old_token = (await sign_in(envoy)).access_token
    clock.advance(31 * 24 * 3600)

    # The new key is published at once but signs only an hour later.
    during_delay = (await sign_in(envoy)).access_token
    keys = await envoy.GetSigningKeys(user_pb2.GetSigningKeysRequest())
    clock.advance(3600 + 1)
    new_token = (await sign_in(envoy)).access_token

    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid
    assert jwt.get_unverified_header(during_delay)["kid"] == old_kid
    assert [key.kid for key in keys.keys] == [new_kid, old_kid]
    assert decode(during_delay, keys)["sub"] == EMAIL
    assert decode(new_token, keys)["sub"] == EMAIL


async def test_private_key_stored_encrypted(envoy: Stub, user_service: Service) -> None:
    await envoy.GetSigningKeys(user_pb2.GetSigningKeysRequest())

    rows = await query(
        user_service, sa.text("SELECT private_key_encrypted FROM signing_keys")
    )

    assert len(rows) == 1
    assert b"PRIVATE KEY" not in bytes(rows[0].private_key_encrypted)


async def test_analyst_cannot_create_admins(operator: Stub, envoy: Stub) -> None:
    request = user_pb2.CreateAdminRequest(
        email="new@example.com", password=PASSWORD, role=user_pb2.ROLE_ADMIN
    )

    error = await rpc_error(
        envoy.CreateAdmin(request, metadata=as_admin("analyst", "sam@example.com"))
    )

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "analyst" in (error.details() or "")


async def test_admin_behind_envoy_creates_admins(envoy: Stub) -> None:
    request = user_pb2.CreateAdminRequest(
        email="new@example.com", password=PASSWORD, role=user_pb2.ROLE_ANALYST
    )

    response = await envoy.CreateAdmin(request, metadata=as_admin())

    assert response.admin.role == user_pb2.ROLE_ANALYST


@pytest.mark.parametrize("role", ["analyst", ""], ids=["analyst", "no-role"])
async def test_only_admins_list_admins(envoy: Stub, role: str) -> None:
    error = await rpc_error(
        envoy.ListAdmins(user_pb2.ListAdminsRequest(), metadata=as_admin(role))
    )

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_analyst_lists_but_cannot_create_api_keys(envoy: Stub) -> None:
    listed = await envoy.ListApiKeys(
        user_pb2.ListApiKeysRequest(), metadata=as_admin("analyst")
    )
    error = await rpc_error(
        envoy.CreateApiKey(
            user_pb2.CreateApiKeyRequest(name="partner"), metadata=as_admin("analyst")
        )
    )

    assert len(listed.api_keys) == 0
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_list_admins_pages(operator: Stub) -> None:
    for index in range(3):
        await create_admin(operator, f"admin{index}@example.com")

    first = await operator.ListAdmins(user_pb2.ListAdminsRequest(page_size=2))
    second = await operator.ListAdmins(
        user_pb2.ListAdminsRequest(page_size=2, page_token=first.next_page_token)
    )

    emails = [admin.email for admin in [*first.admins, *second.admins]]
    assert emails == [f"admin{index}@example.com" for index in range(3)]
    assert second.next_page_token == ""


async def test_password_stored_as_argon2id(
    operator: Stub, user_service: Service
) -> None:
    await create_admin(operator)

    rows = await query(user_service, sa.text("SELECT password_hash FROM admins"))

    assert rows[0].password_hash.startswith("$argon2id$")
    assert PASSWORD not in rows[0].password_hash


async def test_production_hash_uses_rfc_9106_profile() -> None:
    passwords = Passwords()

    password_hash = await passwords.hash(PASSWORD)

    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await passwords.verify(password_hash, PASSWORD)
    assert not await passwords.verify(password_hash, WRONG_PASSWORD)
    assert not await passwords.verify(None, PASSWORD)


async def test_sign_in_rehashes_outdated_password(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    outdated = await Passwords(profiles.RFC_9106_LOW_MEMORY).hash(PASSWORD)
    await create_admin(operator)
    await query(
        user_service,
        sa.text("UPDATE admins SET password_hash = :hash RETURNING 1").bindparams(
            hash=outdated
        ),
    )

    await sign_in(envoy)
    rows = await query(user_service, sa.text("SELECT password_hash FROM admins"))

    assert rows[0].password_hash != outdated
    assert rows[0].password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")


async def test_api_key_secret_shown_once_and_stored_hashed(
    operator: Stub, user_service: Service
) -> None:
    created = await operator.CreateApiKey(user_pb2.CreateApiKeyRequest(name="Acme"))
    listed = await operator.ListApiKeys(user_pb2.ListApiKeysRequest())
    rows = await query(user_service, sa.text("SELECT * FROM api_keys"))

    key_id = created.api_key.api_key_id
    prefix, secret = created.secret[:20], created.secret[20:]
    assert prefix == f"rk_{key_id}_"
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert created.api_key.requests_per_minute == 600
    assert created.api_key.created_by == "operator"
    assert [key.api_key_id for key in listed.api_keys] == [key_id]
    assert (
        bytes(rows[0].secret_hash) == hashlib.sha256(created.secret.encode()).digest()
    )
    assert all(secret not in str(value) for value in rows[0])


async def test_api_key_verifies_until_revoked(
    operator: Stub, user_service: Service, clock: Clock
) -> None:
    api_keys = user_service.accounts.api_keys
    created = await operator.CreateApiKey(
        user_pb2.CreateApiKeyRequest(name="Acme", requests_per_minute=60)
    )

    verified = await api_keys.verify_api_key(created.secret)
    wrong = await api_keys.verify_api_key(created.secret[:-1] + "x")
    revoked = await operator.RevokeApiKey(
        user_pb2.RevokeApiKeyRequest(api_key_id=created.api_key.api_key_id)
    )
    after_revoke = await api_keys.verify_api_key(created.secret)

    assert verified is not None
    assert verified.api_key_id == created.api_key.api_key_id
    assert verified.requests_per_minute == 60
    assert wrong is None
    assert revoked.api_key.HasField("revoke_time")
    assert after_revoke is None


@pytest.mark.parametrize(
    "secret",
    ["", "rk_", "rk_short_secret", "xx_0123456789abcdef_secret", "no key at all"],
)
async def test_malformed_api_key_fails_verify(
    user_service: Service, secret: str
) -> None:
    assert await user_service.accounts.api_keys.verify_api_key(secret) is None


async def test_revoke_unknown_api_key_not_found(operator: Stub) -> None:
    request = user_pb2.RevokeApiKeyRequest(api_key_id="0123456789abcdef")

    error = await rpc_error(operator.RevokeApiKey(request))

    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_list_api_keys_pages(operator: Stub) -> None:
    for name in ("a", "b", "c"):
        await operator.CreateApiKey(user_pb2.CreateApiKeyRequest(name=name))

    first = await operator.ListApiKeys(user_pb2.ListApiKeysRequest(page_size=2))
    second = await operator.ListApiKeys(
        user_pb2.ListApiKeysRequest(page_size=2, page_token=first.next_page_token)
    )

    names = [key.name for key in [*first.api_keys, *second.api_keys]]
    assert names == ["a", "b", "c"]
    assert second.next_page_token == ""


async def test_audit_rows_record_admin_actions(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    await sign_in(envoy)
    for _ in range(5):
        await rpc_error(sign_in(envoy, password=WRONG_PASSWORD))
    created = await envoy.CreateApiKey(
        user_pb2.CreateApiKeyRequest(name="Acme"), metadata=as_admin()
    )
    key_id = created.api_key.api_key_id
    await envoy.RevokeApiKey(
        user_pb2.RevokeApiKeyRequest(api_key_id=key_id), metadata=as_admin()
    )

    actions = await audit_actions(user_service)

    assert actions == [
        ("operator", "create_admin", EMAIL),
        ("envoy", "sign_in", EMAIL),
        *[("envoy", "sign_in_failed", EMAIL)] * 5,
        ("envoy", "account_locked", EMAIL),
        (EMAIL, "create_api_key", key_id),
        (EMAIL, "revoke_api_key", key_id),
    ]


async def test_audit_rows_record_sign_out_and_reuse(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    first = await sign_in(envoy)
    await refresh(envoy, first.refresh_token)
    await rpc_error(refresh(envoy, first.refresh_token))
    other = await sign_in(envoy)
    await envoy.SignOut(user_pb2.SignOutRequest(refresh_token=other.refresh_token))

    actions = [action for _, action, _ in await audit_actions(user_service)]

    assert actions[-2:] == ["sign_in", "sign_out"]
    assert "refresh_token_reused" in actions


async def test_audit_rows_hold_no_secrets(
    operator: Stub, envoy: Stub, user_service: Service
) -> None:
    await create_admin(operator)
    tokens = await sign_in(envoy)
    created = await operator.CreateApiKey(user_pb2.CreateApiKeyRequest(name="Acme"))

    rows = await query(user_service, sa.text("SELECT * FROM audit_events"))

    text = " ".join(str(value) for row in rows for value in row)
    for secret in (PASSWORD, tokens.refresh_token, created.secret):
        assert secret not in text


def _create_admin(**fields: Any) -> user_pb2.CreateAdminRequest:
    values = {"email": EMAIL, "password": PASSWORD, "role": user_pb2.ROLE_ADMIN}
    return user_pb2.CreateAdminRequest(**{**values, **fields})


@pytest.mark.parametrize(
    ("method", "request_message", "field"),
    [
        ("CreateAdmin", _create_admin(email="not-an-email"), "email"),
        ("CreateAdmin", _create_admin(email=""), "email"),
        ("CreateAdmin", _create_admin(password="short"), "password"),
        ("CreateAdmin", _create_admin(password="x" * 1025), "password"),
        ("CreateAdmin", _create_admin(role=user_pb2.ROLE_UNSPECIFIED), "role"),
        ("CreateAdmin", _create_admin(phone_number="12"), "phone_number"),
        ("SignIn", user_pb2.SignInRequest(email="a@b.c"), "password"),
        ("SignIn", user_pb2.SignInRequest(password=PASSWORD), "email"),
        ("RefreshToken", user_pb2.RefreshTokenRequest(), "refresh_token"),
        ("SignOut", user_pb2.SignOutRequest(refresh_token="x" * 257), "refresh_token"),
        ("ListAdmins", user_pb2.ListAdminsRequest(page_size=-1), "page_size"),
        ("ListApiKeys", user_pb2.ListApiKeysRequest(page_token="x"), "page_token"),
        ("CreateApiKey", user_pb2.CreateApiKeyRequest(name=" "), "name"),
        ("CreateApiKey", user_pb2.CreateApiKeyRequest(name="n" * 121), "name"),
        (
            "CreateApiKey",
            user_pb2.CreateApiKeyRequest(name="n", requests_per_minute=100_001),
            "requests_per_minute",
        ),
        (
            "CreateApiKey",
            user_pb2.CreateApiKeyRequest(name="n", requests_per_minute=-1),
            "requests_per_minute",
        ),
        ("RevokeApiKey", user_pb2.RevokeApiKeyRequest(api_key_id="rk_x"), "api_key_id"),
    ],
    ids=[
        "email-format",
        "email-empty",
        "password-short",
        "password-long",
        "role-unspecified",
        "phone",
        "sign-in-password-empty",
        "sign-in-email-empty",
        "refresh-empty",
        "sign-out-long",
        "admins-page-size",
        "api-keys-page-token",
        "key-name-blank",
        "key-name-long",
        "rpm-high",
        "rpm-negative",
        "key-id",
    ],
)
async def test_invalid_requests_name_field(
    operator: Stub, method: str, request_message: Any, field: str
) -> None:
    error = await rpc_error(getattr(operator, method)(request_message))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")


async def test_stranger_cannot_sign_in(connect: StubFactory) -> None:
    error = await rpc_error(sign_in(connect("stranger")))

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_token_lifetimes_read_from_environment(data_key: str) -> None:
    settings = UserSettings.from_env(
        "user",
        {
            "RETAIN_USER_DATABASE_URL": "unused",
            "RETAIN_USER_DATA_KEY": data_key,
            "RETAIN_USER_ACCESS_TOKEN_TTL_SECONDS": "60",
            "RETAIN_USER_REFRESH_TOKEN_TTL_SECONDS": "3600",
        },
    )

    assert settings.access_token_ttl_seconds == 60
    assert settings.refresh_token_ttl_seconds == 3600


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_invalid_token_lifetime_names_variable(data_key: str, value: str) -> None:
    environment = {
        "RETAIN_USER_DATABASE_URL": "unused",
        "RETAIN_USER_DATA_KEY": data_key,
        "RETAIN_USER_ACCESS_TOKEN_TTL_SECONDS": value,
    }

    with pytest.raises(SettingsError) as caught:
        UserSettings.from_env("user", environment)

    assert caught.value.variable == "RETAIN_USER_ACCESS_TOKEN_TTL_SECONDS"


async def test_migrations_match_tables(user_service: Service) -> None:
    def differences(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, metadata))

    async with user_service.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
