"""Who may call each RPC through the Envoy gateway: the role table.

The table lists every RPC that the gateway forwards, by gRPC service and
method, with the roles that may call it. Envoy routes transcoded JSON,
gRPC-web and gRPC calls by their gRPC path, so one entry covers all three.
envoy_routes renders it into routes and envoy_auth into the ``rbac``
policies. An RPC missing from the table, such as GetContacts, has no route,
so the gateway replies 404 to it whatever the credentials.

Roles:

- ``admin`` and ``analyst``: the "role" claim of an access token that the
  user service signed, verified by ``jwt_authn``.
- ``partner``: a live API key in ``x-api-key``, verified by the user
  service's ext_authz Check, which also enforces the key's rate.
- ``public``: no credentials at the gateway. Sign-in and token refresh carry
  their own credentials, and the Africa's Talking callbacks carry a secret
  that the comms service checks.
"""

from __future__ import annotations

from collections.abc import Iterator

ADMIN = "admin"
ANALYST = "analyst"
PARTNER = "partner"
PUBLIC = "public"

# The roles that the gateway can authenticate, in rendering order.
ROLES = (ADMIN, ANALYST, PARTNER)

_ADMIN_ONLY = (ADMIN,)
_READ = (ADMIN, ANALYST)
_PARTNER_WRITE = (ADMIN, PARTNER)
_PARTNER_READ = (ADMIN, ANALYST, PARTNER)
_PUBLIC = (PUBLIC,)

# gRPC service -> method -> roles that may call it through the gateway.
# Analysts read (Get, List, DryRun, Preview, Evaluate); admins may call
# everything listed; partners get the ingest and lookup subset.
GATEWAY_ACCESS: dict[str, dict[str, tuple[str, ...]]] = {
    "retain.user.v1.UserService": {
        "UpsertCustomers": _PARTNER_WRITE,
        "GetCustomer": _PARTNER_READ,
        "LookupCustomers": _PARTNER_READ,
        "ListCustomers": _READ,
        "GetCustomerStats": _READ,
        "RecordConsents": _PARTNER_WRITE,
        "ListConsentEvents": _READ,
        "ExportCustomerData": _ADMIN_ONLY,
        "EraseCustomer": _ADMIN_ONLY,
        "GetJob": _READ,
        "SignIn": _PUBLIC,
        "RefreshToken": _PUBLIC,
        # SignOut revokes the session of the refresh token in its body, which
        # is its credential; the access token may have expired by then.
        "SignOut": _PUBLIC,
        "GetSigningKeys": _PUBLIC,
        "CreateAdmin": _ADMIN_ONLY,
        "ListAdmins": _ADMIN_ONLY,
        "CreateApiKey": _ADMIN_ONLY,
        "ListApiKeys": _READ,
        "RevokeApiKey": _ADMIN_ONLY,
    },
    "retain.events.v1.EventsService": {
        "IngestEvents": _PARTNER_WRITE,
        "StreamEvents": _PARTNER_WRITE,
        "GetEventStats": _PARTNER_READ,
    },
    "retain.inference.v1.InferenceService": {
        "TrainModel": _ADMIN_ONLY,
        "ListModels": _READ,
        "PromoteModel": _ADMIN_ONLY,
        "RollbackModel": _ADMIN_ONLY,
        "StartScoringRun": _ADMIN_ONLY,
        "GetScoringRun": _READ,
        "ListScoringRuns": _READ,
        "ListScores": _READ,
        "GetCustomerScore": _PARTNER_READ,
        "GetRiskDistribution": _READ,
        "EvaluateScoringRun": _READ,
        "GetJob": _READ,
    },
    "retain.comms.v1.CommsService": {
        "CreateCampaign": _ADMIN_ONLY,
        "GetCampaign": _READ,
        "ListCampaigns": _READ,
        "DryRunCampaign": _READ,
        "PreviewMessages": _READ,
        "SendTestMessage": _ADMIN_ONLY,
        "SubmitCampaign": _ADMIN_ONLY,
        "ApproveCampaign": _ADMIN_ONLY,
        "LaunchCampaign": _ADMIN_ONLY,
        "PauseCampaign": _ADMIN_ONLY,
        "ResumeCampaign": _ADMIN_ONLY,
        "StopAllCampaigns": _ADMIN_ONLY,
        "ResumeAllCampaigns": _ADMIN_ONLY,
        "ListMessages": _READ,
        "GetMessageStats": _READ,
        "GetCampaignResults": _READ,
        "GetProviderBalance": _READ,
        "ListAlerts": _READ,
        "ListInboundMessages": _READ,
        "ReceiveDeliveryReport": _PUBLIC,
        "ReceiveInboundSms": _PUBLIC,
        "ReceiveBulkOptOut": _PUBLIC,
        "ReceiveUssd": _PUBLIC,
        "ReceiveVoiceEvent": _PUBLIC,
    },
}


def grpc_path(service: str, method: str) -> str:
    """Return the HTTP/2 path of a gRPC method, such as /pkg.Service/Method."""
    return f"/{service}/{method}"


def gateway_methods() -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """Yield (service, method, roles) for every RPC the gateway forwards."""
    for service, methods in GATEWAY_ACCESS.items():
        for method, roles in methods.items():
            yield service, method, roles


def paths_for_role(role: str) -> list[str]:
    """Return the gRPC paths that role may call, in table order."""
    return [
        grpc_path(service, method)
        for service, method, roles in gateway_methods()
        if role in roles
    ]


def is_public(service: str, method: str) -> bool:
    """Return whether the gateway forwards the RPC without credentials."""
    return PUBLIC in GATEWAY_ACCESS[service][method]
