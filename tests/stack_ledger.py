"""Reads of the session stack's message ledger shared by the stack tests."""

from __future__ import annotations

from retain.comms.v1 import comms_pb2

from retain_cli.clients import Clients

# The demo slice the session stack runs: the first 1,500 CDNOW customers.
DEMO_CUSTOMERS = 1500
PAGE_SIZE = 1000


def all_messages(clients: Clients, campaign_id: int) -> list[comms_pb2.Message]:
    """Return every ledger row of one campaign, page by page."""
    messages: list[comms_pb2.Message] = []
    token = ""
    while True:
        reply = clients.comms.ListMessages(
            comms_pb2.ListMessagesRequest(
                campaign_id=campaign_id, page_size=PAGE_SIZE, page_token=token
            ),
            timeout=30,
        )
        messages.extend(reply.messages)
        token = reply.next_page_token
        if not token:
            return messages


def campaign_ids(clients: Clients) -> list[int]:
    """Return the id of every campaign in the stack."""
    ids: list[int] = []
    token = ""
    while True:
        reply = clients.comms.ListCampaigns(
            comms_pb2.ListCampaignsRequest(page_size=100, page_token=token), timeout=30
        )
        ids.extend(campaign.campaign_id for campaign in reply.campaigns)
        token = reply.next_page_token
        if not token:
            return ids


def delivered_count(clients: Clients) -> int:
    """Return the number of delivered messages across every campaign."""
    return sum(
        1
        for campaign_id in campaign_ids(clients)
        for message in all_messages(clients, campaign_id)
        if message.state == comms_pb2.MESSAGE_STATE_DELIVERED
    )
