"""Who is calling: the peer's mesh identity and, behind Envoy, the end user.

Each service declares a CallPolicy: for every RPC, the mesh members allowed
to call it. Envoy forwards the verified subject and role of an admin or API
key as metadata; a service trusts that metadata only when the peer is Envoy.
"""

from __future__ import annotations

import contextvars
import copy
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc

from retain_runtime.certs import spiffe_id, uri_sans

SUBJECT_HEADER = "x-retain-subject"
ROLE_HEADER = "x-retain-role"

# Methods every authenticated mesh member may call.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Caller:
    """The authenticated peer and, when it is Envoy, the end user behind it."""

    identity: str
    subject: str
    role: str

    @property
    def name(self) -> str:
        """Return the mesh member name, such as "comms"."""
        return self.identity.rsplit("/", 1)[-1]


current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "current_caller", default=None
)


@functools.lru_cache(maxsize=64)
def _identity_from_pem(pem: bytes) -> str:
    sans = [san for san in uri_sans(pem) if san.startswith("spiffe://")]
    return sans[0] if sans else ""


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    """Return the caller of an RPC from its TLS peer and metadata."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or [b""]
    identity = _identity_from_pem(pems[0])
    subject, role = "", ""
    if identity == spiffe_id("envoy"):
        metadata = dict(context.invocation_metadata() or ())
        subject = str(metadata.get(SUBJECT_HEADER, ""))
        role = str(metadata.get(ROLE_HEADER, ""))
    return Caller(identity=identity, subject=subject, role=role)


class CallPolicy:
    """Per-RPC allow-lists of mesh member names, by full method name."""

    def __init__(self, service: str, rules: Mapping[str, Iterable[str]]) -> None:
        self.service = service
        self._allowed = {
            f"/{service}/{method}": frozenset(spiffe_id(n) for n in names)
            for method, names in rules.items()
        }

    def allows(self, method: str, identity: str) -> bool:
        """Return whether identity may call method; unknown methods are denied."""
        if method.startswith(_OPEN_PREFIXES):
            return bool(identity)
        return identity in self._allowed.get(method, frozenset())

    def methods(self) -> list[str]:
        return sorted(self._allowed)

    def union(self, other: CallPolicy) -> CallPolicy:
        """Return a policy with the rules of both, for a server with two services."""
        combined = copy.copy(self)
        combined._allowed = {**self._allowed, **other._allowed}
        return combined
