"""Audit entries for actions that affect admin accounts, sessions and API keys.

The store writes each entry in the transaction of the change it describes,
so a change without its audit row is never committed. Entries name accounts
by email and keys by their public id. They never contain a password, a token
or a key secret.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from retain_runtime.callers import current_caller


class AuditAction(enum.StrEnum):
    """The kind of an audited change, as stored in audit_events.action."""

    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    ACCOUNT_LOCKED = "account_locked"
    SIGN_OUT = "sign_out"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    CREATE_ADMIN = "create_admin"
    CREATE_API_KEY = "create_api_key"
    REVOKE_API_KEY = "revoke_api_key"


@dataclass(frozen=True)
class AuditEntry:
    """One row of audit_events."""

    subject: str
    action: AuditAction
    target: str
    occur_time: dt.datetime

    def row(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "action": self.action.value,
            "target": self.target,
            "occur_time": self.occur_time,
        }


def caller_subject() -> str:
    """Return who is calling: the admin behind Envoy, else the mesh name."""
    caller = current_caller.get()
    if caller is None:
        return "unknown"
    return caller.subject or caller.name


def audit_entry(action: AuditAction, target: str, now: dt.datetime) -> AuditEntry:
    """Return an entry for an action of the current caller on target."""
    return AuditEntry(caller_subject(), action, target, now)
