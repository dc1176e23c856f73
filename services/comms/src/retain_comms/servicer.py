"""The CommsService RPCs: each calls the domain and builds the reply.

Requests arrive validated (validators.py) from allowed callers (policy.py).
Every callback checks the callback secret before it reads its body.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.api import httpbody_pb2
from retain.comms.v1 import comms_pb2, comms_pb2_grpc
from retain_runtime.clock import Clock
from retain_runtime.errors import FailedPrecondition, Unavailable
from retain_runtime.money import kes
from retain_runtime.paging import decode_token, encode_token, page_size
from retain_runtime.timestamps import to_datetime

from retain_comms import views
from retain_comms.africastalking import AfricasTalkingClient, ProviderError
from retain_comms.callbacks import Callbacks
from retain_comms.campaigns import Campaigns
from retain_comms.ledger import Ledger
from retain_comms.previews import Previews
from retain_comms.results import Results
from retain_comms.states import MessageState
from retain_comms.store import Row, Store
from retain_comms.ussd import UssdSurvey
from retain_comms.voice import VoiceResponder

Context = grpc.aio.ServicerContext


class CommsServicer(comms_pb2_grpc.CommsServiceServicer):
    def __init__(
        self,
        campaigns: Campaigns,
        store: Store,
        ledger: Ledger,
        results: Results,
        callbacks: Callbacks,
        provider: AfricasTalkingClient,
        clock: Clock,
        low_balance_micros: int,
        previews: Previews,
        ussd: UssdSurvey,
        voice: VoiceResponder,
    ) -> None:
        self.campaigns = campaigns
        self.store = store
        self.ledger = ledger
        self.results = results
        self.callbacks = callbacks
        self.provider = provider
        self.clock = clock
        self.low_balance_micros = low_balance_micros
        self.previews = previews
        self.ussd = ussd
        self.voice = voice

    async def _campaign(self, row: Row) -> comms_pb2.Campaign:
        spend, reserved = (await self.store.money_of([row.campaign_id]))[
            row.campaign_id
        ]
        return views.campaign(row, spend, reserved)

    async def CreateCampaign(self, request, context: Context):
        row = await self.campaigns.create(request.spec)
        return comms_pb2.CreateCampaignResponse(campaign=await self._campaign(row))

    async def GetCampaign(self, request, context: Context):
        row = await self.campaigns.get(request.campaign_id)
        return comms_pb2.GetCampaignResponse(campaign=await self._campaign(row))

    async def ListCampaigns(self, request, context: Context):
        limit = page_size(request.page_size, maximum=1000)
        rows = await self.store.list_campaigns(decode_token(request.page_token), limit)
        money = await self.store.money_of([row.campaign_id for row in rows])
        return comms_pb2.ListCampaignsResponse(
            campaigns=[views.campaign(row, *money[row.campaign_id]) for row in rows],
            next_page_token=_next_token(rows, limit, "campaign_id"),
        )

    async def DryRunCampaign(self, request, context: Context):
        selection = await self.campaigns.dry_run(request.campaign_id)
        sample = [
            m.customer_id
            for m in selection.messages
            if m.state != MessageState.SUPPRESSED
        ][: request.sample_size]
        return comms_pb2.DryRunCampaignResponse(
            counts=selection.counts(),
            estimated_cost=kes(selection.estimated_cost_micros()),
            sample_customer_ids=sample,
        )

    async def PreviewMessages(self, request, context: Context):
        previews = await self.previews.preview(request.campaign_id)
        return comms_pb2.PreviewMessagesResponse(
            previews=[views.preview(item) for item in previews]
        )

    async def SendTestMessage(self, request, context: Context):
        row = await self.previews.send_test(request.campaign_id, request.language)
        return comms_pb2.SendTestMessageResponse(
            message=views.test_message(row), test_message_id=row.test_message_id
        )

    async def SubmitCampaign(self, request, context: Context):
        row = await self.campaigns.submit(request.campaign_id)
        return comms_pb2.SubmitCampaignResponse(campaign=await self._campaign(row))

    async def ApproveCampaign(self, request, context: Context):
        row = await self.campaigns.approve(request.campaign_id)
        return comms_pb2.ApproveCampaignResponse(campaign=await self._campaign(row))

    async def LaunchCampaign(self, request, context: Context):
        row = await self.campaigns.launch(request.campaign_id)
        return comms_pb2.LaunchCampaignResponse(campaign=await self._campaign(row))

    async def PauseCampaign(self, request, context: Context):
        row = await self.campaigns.pause(request.campaign_id, request.reason)
        return comms_pb2.PauseCampaignResponse(campaign=await self._campaign(row))

    async def ResumeCampaign(self, request, context: Context):
        row = await self.campaigns.resume(request.campaign_id)
        return comms_pb2.ResumeCampaignResponse(campaign=await self._campaign(row))

    async def StopAllCampaigns(self, request, context: Context):
        paused = await self.campaigns.stop_all(request.reason)
        return comms_pb2.StopAllCampaignsResponse(paused_campaign_ids=paused)

    async def ResumeAllCampaigns(self, request, context: Context):
        await self.campaigns.resume_all()
        return comms_pb2.ResumeAllCampaignsResponse()

    async def ListMessages(self, request, context: Context):
        await self.campaigns.get(request.campaign_id)
        limit = page_size(request.page_size, maximum=1000)
        state = (
            MessageState.from_proto(request.state)
            if request.state != comms_pb2.MESSAGE_STATE_UNSPECIFIED
            else None
        )
        rows = await self.ledger.list_messages(
            request.campaign_id, state, decode_token(request.page_token), limit
        )
        return comms_pb2.ListMessagesResponse(
            messages=[views.message(row) for row in rows],
            next_page_token=_next_token(rows, limit, "message_id"),
        )

    async def GetMessageStats(self, request, context: Context):
        await self.campaigns.get(request.campaign_id)
        counts = await self.ledger.state_counts(request.campaign_id)
        spend, _ = (await self.store.money_of([request.campaign_id]))[
            request.campaign_id
        ]
        return comms_pb2.GetMessageStatsResponse(
            counts=[
                comms_pb2.StateCount(state=state.to_proto(), message_count=count)
                for state, count in sorted(
                    counts.items(), key=lambda i: i[0].to_proto()
                )
            ],
            spend=kes(spend),
        )

    async def GetCampaignResults(self, request, context: Context):
        row = await self.campaigns.get(request.campaign_id)
        if row.launch_time is None:
            raise FailedPrecondition(
                f"campaign {request.campaign_id} has not been launched; launch it first"
            )
        start = (
            to_datetime(request.start_time)
            if request.HasField("start_time")
            else row.launch_time
        )
        end = (
            to_datetime(request.end_time)
            if request.HasField("end_time")
            else self.clock.now()
        )
        if end <= start:
            raise FailedPrecondition(
                f"the window ends at {end.isoformat()}, not after its start "
                f"{start.isoformat()}; pass a later end_time"
            )
        return await self.results.campaign_results(request.campaign_id, start, end)

    async def GetProviderBalance(self, request, context: Context):
        try:
            currency, micros = await self.provider.balance()
        except ProviderError as error:
            raise Unavailable(
                f"reading the Africa's Talking balance failed: {error}"
            ) from None
        return comms_pb2.GetProviderBalanceResponse(
            balance={"currency_code": currency, "amount_micros": micros},
            low=micros < self.low_balance_micros,
        )

    async def ListAlerts(self, request, context: Context):
        limit = page_size(request.page_size, maximum=1000)
        rows = await self.store.list_alerts(decode_token(request.page_token), limit)
        return comms_pb2.ListAlertsResponse(
            alerts=[views.alert(row) for row in rows],
            next_page_token=_next_token(rows, limit, "alert_id"),
        )

    async def ListInboundMessages(self, request, context: Context):
        limit = page_size(request.page_size, maximum=1000)
        rows = await self.store.list_inbound(decode_token(request.page_token), limit)
        return comms_pb2.ListInboundMessagesResponse(
            inbound_messages=[views.inbound(row) for row in rows],
            next_page_token=_next_token(rows, limit, "inbound_message_id"),
        )

    async def ReceiveDeliveryReport(self, request, context: Context):
        self.callbacks.check_secret(request.secret)
        await self.callbacks.delivery_report(request.http_body.data)
        return comms_pb2.ReceiveDeliveryReportResponse()

    async def ReceiveInboundSms(self, request, context: Context):
        self.callbacks.check_secret(request.secret)
        await self.callbacks.inbound_sms(request.http_body.data)
        return comms_pb2.ReceiveInboundSmsResponse()

    async def ReceiveBulkOptOut(self, request, context: Context):
        self.callbacks.check_secret(request.secret)
        await self.callbacks.bulk_opt_out(request.http_body.data)
        return comms_pb2.ReceiveBulkOptOutResponse()

    async def ReceiveUssd(self, request, context: Context):
        self.callbacks.check_secret(request.secret)
        text = await self.ussd.respond(request.http_body.data)
        return httpbody_pb2.HttpBody(content_type="text/plain", data=text.encode())

    async def ReceiveVoiceEvent(self, request, context: Context):
        self.callbacks.check_secret(request.secret)
        xml = await self.voice.respond(request.http_body.data)
        return httpbody_pb2.HttpBody(content_type="application/xml", data=xml.encode())


def _next_token(rows: Sequence[Row], limit: int, key: str) -> str:
    """Return the token of the next page, empty when this page is the last."""
    if len(rows) < limit:
        return ""
    return encode_token(getattr(rows[-1], key))
