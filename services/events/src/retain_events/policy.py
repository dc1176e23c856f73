"""The allow-list of mesh members for each EventsService RPC."""

from __future__ import annotations

from retain_runtime.callers import CallPolicy

SERVICE_NAME = "retain.events.v1.EventsService"

POLICY = CallPolicy(
    SERVICE_NAME,
    {
        # The startup's backend and partners push events through Envoy; comms
        # stores the answers of USSD surveys.
        "IngestEvents": ["operator", "envoy", "comms"],
        "StreamEvents": ["operator", "envoy"],
        "ListSequences": ["inference", "operator"],
        "CountSequences": ["inference", "operator"],
        "GetCustomerActivity": ["inference", "comms", "operator"],
        "GetEventStats": ["operator", "envoy"],
        # The user service erases a customer's events on a data-subject request.
        "DeleteCustomerEvents": ["user", "operator"],
    },
)
