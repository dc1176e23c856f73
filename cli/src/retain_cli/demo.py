"""`retain demo`: the whole retention loop on the CDNOW purchase log.

Stages: customers, calibration events, training, scoring, campaign,
delivery, holdout events, evaluation. Each stage reads its figures back from
the services' ledgers, never from logs, and the summary is deterministic for
the same inputs: customer data come from a seeded generator and the holdout
draw is seeded by the campaign.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from retain.comms.v1 import comms_pb2
from retain.events.v1 import events_pb2
from retain.inference.v1 import inference_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from rich.progress import Progress

from retain_cli import cdnow
from retain_cli.clients import Clients, wait_for_job
from retain_runtime.clock import NAIROBI
from retain_runtime.money import MICROS, kes
from retain_runtime.timestamps import from_datetime

log = logging.getLogger(__name__)

# The demo lives on the afternoon of the last calibration day, in working hours.
DEMO_NOW = dt.datetime(1997, 9, 30, 15, 0, tzinfo=NAIROBI)
# After the demo the stack reads the day after the holdout period, so the
# dashboard's campaign results count every holdout purchase.
DEMO_AFTER = dt.datetime(1998, 7, 1, 12, 0, tzinfo=NAIROBI)
TRAIN_CUTOFF = dt.datetime(1997, 7, 1, tzinfo=NAIROBI)
HOLDOUT_13W_END = dt.datetime(1997, 12, 31, tzinfo=NAIROBI)
SEED = 1997
CONSENT_SHARE = 0.9
SWAHILI_SHARE = 0.3
CUSTOMER_BATCH = 1000
EVENT_BATCH = 5000
# At-risk customers whose reasons the summary shows.
EXAMPLES = 3


@dataclass
class DemoOptions:
    """Options of `retain demo`: data size, campaign settings and timeouts."""

    customers: int = 0  # 0 means every CDNOW customer
    threshold: float = 0.7
    holdout_share: float = 0.1
    budget_kes: int = 20_000
    delivery_timeout_s: float = 600.0
    job_timeout_s: float = 900.0


@dataclass
class Summary:
    """The figures the demo prints and writes as JSON."""

    values: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.values, "stage_seconds": self.stage_seconds}


class Demo:
    """Runs the stages against a started stack."""

    def __init__(self, clients: Clients, options: DemoOptions, progress: Progress) -> None:
        self.clients = clients
        self.options = options
        self.progress = progress
        self.summary = Summary()
        self.customer_ids: dict[int, int] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        log.info("Demo stage %s started", name)
        yield
        seconds = round(time.monotonic() - started, 2)
        self.summary.stage_seconds[name] = seconds
        log.info("Demo stage %s finished in %.1fs", name, seconds)

    def run(self) -> Summary:
        purchases = self._purchases()
        with self.stage("customers"):
            self.create_customers(sorted({p.customer for p in purchases}))
        with self.stage("calibration_events"):
            calibration = [p for p in purchases if p.occur_time < cdnow.CALIBRATION_END]
            self.summary.values["events_ingested"] = self.ingest(calibration, "calibration events")
        with self.stage("training"):
            self.train()
        with self.stage("scoring"):
            run_id = self.score()
        with self.stage("campaign"):
            campaign_id = self.launch_campaign(run_id)
        with self.stage("delivery"):
            self.wait_for_delivery(campaign_id)
        with self.stage("holdout_events"):
            holdout = [p for p in purchases if p.occur_time >= cdnow.CALIBRATION_END]
            self.summary.values["holdout_events_ingested"] = self.ingest(holdout, "holdout events")
        with self.stage("evaluation"):
            self.evaluate(run_id, campaign_id)
        return self.summary

    def _purchases(self) -> list[cdnow.Purchase]:
        purchases = cdnow.read_purchases()
        if self.options.customers:
            keep = set(sorted({p.customer for p in purchases})[: self.options.customers])
            purchases = [p for p in purchases if p.customer in keep]
        return purchases

    def create_customers(self, cdnow_ids: Sequence[int]) -> None:
        """Upsert one customer per CDNOW id and record demo consent for ~90%."""
        rng = random.Random(SEED)
        profiles = [_profile(cdnow_id, rng) for cdnow_id in cdnow_ids]
        task = self.progress.add_task("customers", total=len(profiles))
        consented = 0
        for start in range(0, len(profiles), CUSTOMER_BATCH):
            batch = profiles[start : start + CUSTOMER_BATCH]
            reply = self.clients.user.UpsertCustomers(
                user_pb2.UpsertCustomersRequest(customers=[p.customer for p in batch]),
                timeout=60,
            )
            consents = []
            for profile, customer_id in zip(batch, reply.customer_ids, strict=True):
                self.customer_ids[profile.cdnow_id] = customer_id
                if profile.consents:
                    consents.append(_marketing_sms_consent(customer_id))
            if consents:
                self.clients.user.RecordConsents(
                    user_pb2.RecordConsentsRequest(consents=consents), timeout=60
                )
            consented += len(consents)
            self.progress.advance(task, len(batch))
        self.summary.values["customers"] = len(profiles)
        self.summary.values["consented"] = consented

    def ingest(self, purchases: Sequence[cdnow.Purchase], label: str) -> int:
        """Send purchases to the events service in batches; return events stored."""
        task = self.progress.add_task(label, total=len(purchases))
        accepted = 0
        for start in range(0, len(purchases), EVENT_BATCH):
            batch = purchases[start : start + EVENT_BATCH]
            events = [_event(p, self.customer_ids[p.customer]) for p in batch]
            reply = self.clients.events.IngestEvents(
                events_pb2.IngestEventsRequest(events=events), timeout=120
            )
            accepted += reply.accepted_count + reply.duplicate_count
            self.progress.advance(task, len(batch))
        return accepted

    def train(self) -> None:
        """Train on calibration data only: features before the cut-off, labels after."""
        reply = self.clients.inference.TrainModel(
            inference_pb2.TrainModelRequest(
                cutoff_time=from_datetime(TRAIN_CUTOFF),
                label_end_time=from_datetime(cdnow.CALIBRATION_END),
                seed=SEED,
                promote=True,
            ),
            timeout=60,
        )
        job = wait_for_job(
            self.clients, reply.job, self.options.job_timeout_s, self._job_progress("training")
        )
        self.summary.values["model_version"] = job.result_id

    def score(self) -> int:
        """Score every customer as of the end of the calibration period."""
        reply = self.clients.inference.StartScoringRun(
            inference_pb2.StartScoringRunRequest(as_of_time=from_datetime(cdnow.CALIBRATION_END)),
            timeout=60,
        )
        run = reply.scoring_run
        wait_for_job(self.clients, run.job, self.options.job_timeout_s, self._job_progress("scoring"))
        run = self.clients.inference.GetScoringRun(
            inference_pb2.GetScoringRunRequest(scoring_run_id=run.scoring_run_id), timeout=30
        ).scoring_run
        self.summary.values["scored"] = run.scored_count
        self.summary.values["examples"] = self.examples(run.scoring_run_id)
        return run.scoring_run_id

    def examples(self, run_id: int) -> list[dict[str, Any]]:
        """Return the first few at-risk customers with their reasons in words."""
        reply = self.clients.inference.ListScores(
            inference_pb2.ListScoresRequest(
                scoring_run_id=run_id,
                min_churn_probability=self.options.threshold,
                page_size=EXAMPLES,
            ),
            timeout=30,
        )
        return [
            {
                "customer_id": score.customer_id,
                "churn_probability": round(score.churn_probability, 3),
                "expected_days_to_next_activity": round(
                    score.expected_days_to_next_activity, 1
                ),
                "reasons": [reason.text for reason in score.reasons],
            }
            for score in reply.scores
        ]

    def _job_progress(self, label: str) -> Callable[[Any], None]:
        task = self.progress.add_task(label, total=None)

        def update(job: Any) -> None:
            self.progress.update(task, completed=job.progress_done, total=job.progress_total or None)

        return update

    def launch_campaign(self, run_id: int) -> int:
        """Create, approve and launch a win-back campaign over at-risk customers."""
        spec = comms_pb2.CampaignSpec(
            name="Win back lapsing CDNOW customers",
            scoring_run_id=run_id,
            min_churn_probability=self.options.threshold,
            holdout_share=self.options.holdout_share,
            budget=kes(self.options.budget_kes * MICROS),
            channel=channel_pb2.CHANNEL_SMS,
            purpose=channel_pb2.PURPOSE_MARKETING,
            offer="20% off your next order",
            brand_name="Retain Demo",
        )
        comms = self.clients.comms
        campaign = comms.CreateCampaign(comms_pb2.CreateCampaignRequest(spec=spec), timeout=30).campaign
        campaign_id = campaign.campaign_id
        comms.SubmitCampaign(comms_pb2.SubmitCampaignRequest(campaign_id=campaign_id), timeout=30)
        comms.ApproveCampaign(comms_pb2.ApproveCampaignRequest(campaign_id=campaign_id), timeout=30)
        campaign = comms.LaunchCampaign(
            comms_pb2.LaunchCampaignRequest(campaign_id=campaign_id), timeout=300
        ).campaign
        counts = campaign.counts
        self.summary.values.update(
            campaign_id=campaign_id,
            at_risk=counts.at_risk_count,
            eligible=counts.eligible_count,
            treated=counts.treated_count,
            held_out=counts.held_out_count,
            dropped_no_consent=counts.no_consent_count,
            dropped_capped=counts.capped_count,
        )
        return campaign_id

    def message_counts(self, campaign_id: int) -> Counter[str]:
        reply = self.clients.comms.GetMessageStats(
            comms_pb2.GetMessageStatsRequest(campaign_id=campaign_id), timeout=30
        )
        counts: Counter[str] = Counter()
        for row in reply.counts:
            name = comms_pb2.MessageState.Name(row.state).removeprefix("MESSAGE_STATE_").lower()
            counts[name] = row.message_count
        counts["_spend_micros"] = reply.spend.amount_micros
        return counts

    def wait_for_delivery(self, campaign_id: int) -> None:
        """Poll the ledger until no message is waiting for a send or a report."""
        total = self.summary.values.get("treated", 0)
        task = self.progress.add_task("delivery", total=total or None)
        deadline = time.monotonic() + self.options.delivery_timeout_s
        open_states = ("pending", "sending", "submitted")
        while True:
            counts = self.message_counts(campaign_id)
            waiting = sum(counts[s] for s in open_states)
            self.progress.update(task, completed=max(total - waiting, 0))
            if waiting == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.summary.values["messages"] = {
            "queued": counts["pending"] + counts["sending"],
            "submitted": counts["submitted"],
            "delivered": counts["delivered"],
            "failed": counts["failed"],
            "suppressed": counts["suppressed"],
            "deferred": counts["deferred"],
            "dropped": counts["dropped"],
            "delivery_unknown": counts["delivery_unknown"],
        }
        self.summary.values["cost_kes"] = counts["_spend_micros"] / MICROS

    def evaluate(self, run_id: int, campaign_id: int) -> None:
        """Score the model against what customers did, and the campaign against control."""
        for key, end in (("", cdnow.HOLDOUT_END), ("_13w", HOLDOUT_13W_END)):
            reply = self.clients.inference.EvaluateScoringRun(
                inference_pb2.EvaluateScoringRunRequest(
                    scoring_run_id=run_id,
                    label_start_time=from_datetime(cdnow.CALIBRATION_END),
                    label_end_time=from_datetime(end),
                ),
                timeout=120,
            )
            self.summary.values[f"roc_auc{key}"] = round(reply.roc_auc, 4)
            self.summary.values[f"pr_auc{key}"] = round(reply.pr_auc, 4)
        results = self.clients.comms.GetCampaignResults(
            comms_pb2.GetCampaignResultsRequest(
                campaign_id=campaign_id,
                start_time=from_datetime(cdnow.CALIBRATION_END),
                end_time=from_datetime(cdnow.HOLDOUT_END),
            ),
            timeout=120,
        )
        self.summary.values.update(
            retention_treated=round(results.retention_treated, 4),
            retention_control=round(results.retention_control, 4),
            uplift_ci=[round(results.uplift_ci_low, 4), round(results.uplift_ci_high, 4)],
        )


@dataclass(frozen=True)
class _Profile:
    cdnow_id: int
    customer: user_pb2.CustomerInput
    consents: bool


def _profile(cdnow_id: int, rng: random.Random) -> _Profile:
    # Generated numbers are marked fictitious, so no live account sends to them.
    phone = f"+2547{rng.randrange(100_000_000):08d}"
    language = user_pb2.LANGUAGE_SW if rng.random() < SWAHILI_SHARE else user_pb2.LANGUAGE_EN
    customer = user_pb2.CustomerInput(
        external_id=f"cdnow-{cdnow_id:05d}",
        phone_number=phone,
        language=language,
        vertical=user_pb2.VERTICAL_TRANSPORT,
        first_name=rng.choice(FIRST_NAMES),
        fictitious=True,
        attributes={"source": "cdnow"},
    )
    return _Profile(cdnow_id, customer, rng.random() < CONSENT_SHARE)


def _marketing_sms_consent(customer_id: int) -> user_pb2.ConsentInput:
    return user_pb2.ConsentInput(
        customer_id=customer_id,
        channel=channel_pb2.CHANNEL_SMS,
        purpose=channel_pb2.PURPOSE_MARKETING,
        granted=True,
        source=user_pb2.CONSENT_SOURCE_DEMO,
        notice_version="demo-1997",
        evidence="generated by retain demo",
        occur_time=from_datetime(cdnow.CALIBRATION_START),
    )


def _event(purchase: cdnow.Purchase, customer_id: int) -> events_pb2.Event:
    amount_micros = int(purchase.usd * cdnow.USD_TO_KES * MICROS)
    return events_pb2.Event(
        event_id=f"cdnow-row-{purchase.row}",
        customer_id=customer_id,
        type=events_pb2.EVENT_TYPE_PURCHASE,
        occur_time=from_datetime(purchase.occur_time),
        amount=kes(amount_micros),
        attributes={"source_amount": f"{purchase.usd:.2f}", "source_currency": "USD",
                    "items": str(purchase.cds)},
    )


FIRST_NAMES = (
    "Amina", "Brian", "Cynthia", "David", "Esther", "Faith", "George", "Halima",
    "Ian", "Joy", "Kevin", "Lucy", "Mercy", "Njeri", "Otieno", "Purity",
    "Wanjiku", "Kamau", "Achieng", "Mwangi", "Chebet", "Kiprop", "Akinyi", "Baraka",
)
