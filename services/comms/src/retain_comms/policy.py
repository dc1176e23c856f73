"""The allow-list of mesh members for each comms RPC.

Admins reach the campaign RPCs through Envoy and operators through the
`retain` CLI. Africa's Talking reaches the callbacks through Envoy; the
operator identity may call them too, for tests and replays.
"""

from __future__ import annotations

from retain_runtime.callers import CallPolicy

SERVICE = "retain.comms.v1.CommsService"

_ADMIN = ["operator", "envoy"]
_CALLBACK = ["envoy", "operator"]

_ADMIN_METHODS = (
    "CreateCampaign",
    "GetCampaign",
    "ListCampaigns",
    "DryRunCampaign",
    "PreviewMessages",
    "SendTestMessage",
    "SubmitCampaign",
    "ApproveCampaign",
    "LaunchCampaign",
    "PauseCampaign",
    "ResumeCampaign",
    "StopAllCampaigns",
    "ResumeAllCampaigns",
    "ListMessages",
    "GetMessageStats",
    "GetCampaignResults",
    "GetProviderBalance",
    "ListAlerts",
    "ListInboundMessages",
)

_CALLBACK_METHODS = (
    "ReceiveDeliveryReport",
    "ReceiveInboundSms",
    "ReceiveBulkOptOut",
    "ReceiveUssd",
    "ReceiveVoiceEvent",
)

POLICY = CallPolicy(
    SERVICE,
    {
        **{method: _ADMIN for method in _ADMIN_METHODS},
        **{method: _CALLBACK for method in _CALLBACK_METHODS},
    },
)
