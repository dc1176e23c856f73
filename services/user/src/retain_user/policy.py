"""The allow-list of mesh members for each RPC of UserService.

Only comms and its worker read full phone numbers (GetContacts), and only
comms reads an admin's number (GetAdminContact) or finds customers by number
(LookupPhoneNumber). Envoy
forwards the dashboard, partners and the startup's backend; operator is the
`retain` CLI.
"""

from __future__ import annotations

from retain_runtime.callers import CallPolicy

SERVICE_NAME = "retain.user.v1.UserService"

_OPERATOR_AND_ENVOY = ("operator", "envoy")

# Customer, consent, data-subject and account RPCs: the CLI and the gateway.
_ADMINISTRATION = (
    "UpsertCustomers",
    "GetCustomer",
    "LookupCustomers",
    "ListCustomers",
    "GetCustomerStats",
    "RecordConsents",
    "ListConsentEvents",
    "ExportCustomerData",
    "EraseCustomer",
    "GetJob",
    "SignIn",
    "RefreshToken",
    "SignOut",
    "GetSigningKeys",
    "CreateAdmin",
    "ListAdmins",
    "CreateApiKey",
    "ListApiKeys",
    "RevokeApiKey",
)

POLICY = CallPolicy(
    SERVICE_NAME,
    {
        **{method: _OPERATOR_AND_ENVOY for method in _ADMINISTRATION},
        "CheckConsents": ("comms", "worker", "operator"),
        "GetContacts": ("comms", "worker"),
        "RecordOptOut": ("comms", "worker", "operator"),
        "RecordOptIn": ("comms", "operator"),
        "GetAdminContact": ("comms",),
        "LookupPhoneNumber": ("comms",),
    },
)
