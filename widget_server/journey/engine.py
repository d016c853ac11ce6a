"""Occurrences and their evaluation.

Planning turns an anchor (a visit, a completed visit, a stage entered, a field set, an answer, an earlier
firing) into a `scheduled` RuleFiring row per enabled rule, by INSERT … ON CONFLICT DO NOTHING on (rule,
occurrence): a replayed hook or a retried job plans nothing new. Firing takes due rows under a row lock
(PostgreSQL FOR UPDATE SKIP LOCKED; SQLite's BEGIN IMMEDIATE serialises writers) and decides each one:
`expired` past its window, `skipped` when a condition fails, postponed while a patient message waits out
quiet hours or the deal is not known yet, else `fired` — in the same transaction as its outbox jobs.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from connectors.phones import e164

from ..models import (
    JourneyAnswer,
    JourneyDeal,
    JourneyRule,
    JourneyRuleVersion,
    MisAppointment,
    MisPatient,
    OutboxJob,
    Portal,
    RuleFiring,
)
from ..outbox import after_commit, wake_outbox_jobs
from .placeholders import render
from .settings import JourneySettings, journey_settings, parse_hhmm

__all__ = [
    "FireResult",
    "RuleSet",
    "add_months",
    "backfill_rule",
    "fire_due",
    "on_appointments",
    "on_deal_change",
    "preview",
    "record_answer",
    "replan_rule",
]

RETRY_LATER = timedelta(minutes=5)
WAKE_GROUP = 50
ACTIVE_VISIT = ("requested", "booked", "confirmed", "arrived")
SEND_MESSAGE = "journey_send_message"
CREATE_DEAL = "journey_create_deal"
ADD_TAG = "journey_add_tag"


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _local_at(moment: datetime, tz: ZoneInfo, *, days: int = 0, months: int = 0, at: str | None) -> datetime:
    """`moment`'s local day shifted by months and days, at the local time `at` (or the same time of day)."""
    local = moment.astimezone(tz)
    day = add_months(local.date(), months) + timedelta(days=days)
    clock = parse_hhmm(at) if at else local.time().replace(tzinfo=None)
    return datetime.combine(day, clock or time(), tzinfo=tz).astimezone(UTC)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


# --- the enabled rules of a portal ----------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRule:
    id: int
    key: str | None
    name: str
    version: int
    version_id: int
    doc: Mapping[str, Any]

    @property
    def trigger(self) -> Mapping[str, Any]:
        return self.doc["trigger"]

    @property
    def window(self) -> timedelta:
        return timedelta(hours=int(self.doc.get("window_hours") or 12))


@dataclass
class RuleSet:
    rules: list[LiveRule]

    @classmethod
    def load(cls, session: Session, portal_id: int, *, enabled_only: bool = True) -> RuleSet:
        query = (
            select(JourneyRule, JourneyRuleVersion)
            .join(
                JourneyRuleVersion,
                and_(
                    JourneyRuleVersion.rule_id == JourneyRule.id,
                    JourneyRuleVersion.version == JourneyRule.version,
                ),
            )
            .where(JourneyRule.portal_id == portal_id)
            .order_by(JourneyRule.id)
        )
        if enabled_only:
            query = query.where(JourneyRule.enabled.is_(True))
        return cls(
            [LiveRule(r.id, r.key, r.name, r.version, v.id, v.document) for r, v in session.execute(query)]
        )

    def of(self, *types: str) -> list[LiveRule]:
        return [r for r in self.rules if r.trigger["type"] in types]

    def by_id(self) -> dict[int, LiveRule]:
        return {r.id: r for r in self.rules}


# --- planning -------------------------------------------------------------------------------------------


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _plan(session: Session, portal_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Schedule occurrences; one already planned (or decided) for its rule is left as it is."""
    if not rows:
        return
    values = [
        {
            "portal_id": portal_id,
            "state": "scheduled",
            "context": {},
            "deal_id": None,
            "appointment_id": None,
            "patient_id": None,
            "anchor_at": None,
            "expires_at": None,
            **row,
            "due_at": row["planned_at"],
        }
        for row in rows
    ]
    for start in range(0, len(values), 500):
        statement = _insert(session)(RuleFiring).on_conflict_do_nothing(
            index_elements=["rule_id", "occurrence"]
        )
        session.execute(statement, values[start : start + 500])


def _occurrence(
    rule: LiveRule, occurrence: str, planned_at: datetime, created_at: datetime, **rest: Any
) -> dict:
    return {
        "rule_id": rule.id,
        "rule_version_id": rule.version_id,
        "occurrence": occurrence,
        "planned_at": planned_at,
        "expires_at": planned_at + rule.window,
        "created_at": created_at,
        **rest,
    }


def on_appointments(
    session: Session,
    portal: Portal,
    rows: Iterable[MisAppointment],
    now: datetime,
    *,
    only: int | None = None,
) -> int:
    """Plan what the given visits (just inserted or changed, in the caller's transaction) set off; `only`:
    for that one rule (a rule just enabled catching up on the visits already known)."""
    rules = RuleSet.load(session, portal.id)
    if only is not None:
        rules = RuleSet([r for r in rules.rules if r.id == only])
    status_rules = rules.of("appointment_status")
    settings = journey_settings(portal.settings)
    visit_rules = [
        r
        for r in rules.of("offset")
        if r.trigger["anchor"] in ("visit", "last_visit") and _chosen(r, settings)
    ]
    phone_rules = rules.of("phone_flagged")
    if not status_rules and not visit_rules and not phone_rules:
        return 0
    tz = ZoneInfo(portal.timezone)
    planned: list[dict[str, Any]] = []
    keep: dict[tuple[int, int], str] = {}
    completed: list[MisAppointment] = []
    for row in rows:
        base = {"appointment_id": row.id, "patient_id": row.patient_id, "deal_id": row.deal_id}
        if "invalid_phone" in (row.flags or ()):
            # Once per patient: the sync flags every visit of a person whose number fails validation.
            for rule in phone_rules:
                key = f"phone:patient:{row.patient_id}"
                planned.append(_occurrence(rule, key, now, now, anchor_at=row.starts_at, **base))
        for rule in status_rules:
            if row.status in rule.trigger["statuses"]:
                key = f"status:{row.id}:{row.status}:{_ts(row.starts_at)}"
                planned.append(_occurrence(rule, key, now, now, anchor_at=row.starts_at, **base))
        for rule in visit_rules:
            t = rule.trigger
            if t["anchor"] == "visit":
                key = f"visit:{row.id}:{_ts(row.starts_at)}"
                keep[(rule.id, row.id)] = key
                at = _local_at(row.starts_at, tz, days=t["days"], months=t["months"], at=t["at"])
            elif row.status == "completed":
                key = f"last:{row.id}"
                at = _local_at(row.starts_at, tz, days=t["days"], months=t["months"], at=t["at"])
                completed.append(row)
            else:
                continue
            # History arriving late (an import of last year) plans nothing that is already past its window.
            if at + rule.window > now:
                planned.append(_occurrence(rule, key, at, now, anchor_at=row.starts_at, **base))
    _cancel_superseded(
        session,
        portal.id,
        keep,
        completed,
        [r for r in visit_rules if r.trigger["anchor"] == "last_visit"],
        now,
    )
    _plan(session, portal.id, planned)
    return len(planned)


def _cancel_superseded(
    session: Session,
    portal_id: int,
    keep: Mapping[tuple[int, int], str],
    completed: Sequence[MisAppointment],
    last_rules: Sequence[LiveRule],
    now: datetime,
) -> None:
    """A rescheduled visit is a new occurrence: the old start's scheduled firing is cancelled. A newer
    completed visit replaces the older one as the anchor of `last_visit` rules."""
    cancel: list[int] = []
    ids = sorted({appointment_id for _, appointment_id in keep})
    for start in range(0, len(ids), 500):
        for firing_id, rule_id, appointment_id, occurrence in session.execute(
            select(RuleFiring.id, RuleFiring.rule_id, RuleFiring.appointment_id, RuleFiring.occurrence).where(
                RuleFiring.portal_id == portal_id,
                RuleFiring.appointment_id.in_(ids[start : start + 500]),
                RuleFiring.state == "scheduled",
                RuleFiring.occurrence.like("visit:%"),
            )
        ):
            wanted = keep.get((rule_id, appointment_id))
            if wanted is not None and wanted != occurrence:
                cancel.append(firing_id)
    if completed and last_rules:
        latest: dict[int, datetime] = {}
        for row in completed:
            latest[row.patient_id] = max(latest.get(row.patient_id, row.starts_at), row.starts_at)
        patients = sorted(latest)
        for start in range(0, len(patients), 500):
            for firing_id, patient_id, anchor_at in session.execute(
                select(RuleFiring.id, RuleFiring.patient_id, RuleFiring.anchor_at).where(
                    RuleFiring.portal_id == portal_id,
                    RuleFiring.rule_id.in_([r.id for r in last_rules]),
                    RuleFiring.patient_id.in_(patients[start : start + 500]),
                    RuleFiring.state == "scheduled",
                )
            ):
                if anchor_at is not None and anchor_at < latest[patient_id]:
                    cancel.append(firing_id)
    _decide(session, cancel, "cancelled", "a newer anchor replaced this occurrence", now)


def _decide(session: Session, ids: Sequence[int], state: str, reason: str | None, now: datetime) -> None:
    if ids:
        session.execute(
            update(RuleFiring)
            .where(RuleFiring.id.in_(list(ids)), RuleFiring.state == "scheduled")
            .values(state=state, reason=reason, decided_at=now)
        )


def _deal_row(session: Session, portal_id: int, deal_id: str, now: datetime) -> JourneyDeal:
    session.execute(
        _insert(session)(JourneyDeal)
        .values(portal_id=portal_id, deal_id=deal_id, fields={}, updated_at=now)
        .on_conflict_do_nothing(index_elements=["portal_id", "deal_id"])
    )
    row = session.scalar(
        select(JourneyDeal)
        .where(JourneyDeal.portal_id == portal_id, JourneyDeal.deal_id == deal_id)
        .with_for_update()
    )
    assert row is not None
    return row


def on_deal_change(
    session: Session,
    portal: Portal,
    deal_id: str,
    now: datetime,
    *,
    pipeline_id: str | None = None,
    stage_id: str | None = None,
    fields: Mapping[str, Any] | None = None,
    loss_reason: str | None = None,
    phones: Sequence[str] | None = None,
) -> int:
    """What a person's change of a deal sets off. Only a change of what we knew counts: the same hook
    again (amoCRM repeats the whole lead) finds the stage and fields as they are and plans nothing.
    `loss_reason`: the CRM's own reason of a lost deal (read by the caller when the portal uses it);
    `phones`: the numbers a new lead came with, for `phone_flagged` rules."""
    settings = journey_settings(portal.settings)
    deal = _deal_row(session, portal.id, deal_id, now)
    if deal.patient_id is None:
        # A visit's deal belongs to its patient: complex treatment and bookings are read per patient.
        deal.patient_id = session.scalar(
            select(MisAppointment.patient_id)
            .where(MisAppointment.portal_id == portal.id, MisAppointment.deal_id == deal_id)
            .limit(1)
        )
    fields = dict(fields or {})
    if loss_reason is None and settings.loss_reason_source == "field" and settings.loss_reason_field_id:
        loss_reason = fields.get(settings.loss_reason_field_id) or None
    rules = RuleSet.load(session, portal.id)
    planned: list[dict[str, Any]] = []
    base = {"deal_id": deal_id, "patient_id": deal.patient_id}
    tz = ZoneInfo(portal.timezone)
    if loss_reason is not None:
        deal.loss_reason = str(loss_reason)
    changed_fields = {k: v for k, v in fields.items() if deal.fields.get(k) != v}
    if changed_fields:
        deal.fields = {**deal.fields, **changed_fields}
    entered = stage_id is not None and (stage_id, pipeline_id or deal.pipeline_id) != (
        deal.stage_id,
        deal.pipeline_id,
    )
    if entered:
        deal.pipeline_id, deal.stage_id, deal.stage_entered_at = (
            pipeline_id or deal.pipeline_id,
            stage_id,
            now,
        )
        for rule in rules.of("stage_entered", "stuck"):
            t = rule.trigger
            if t["stage_id"] != stage_id or t.get("pipeline_id") not in (None, deal.pipeline_id):
                continue
            key = f"{t['type']}:{deal_id}:{deal.pipeline_id}:{stage_id}:{_ts(now)}"
            due = now if t["type"] == "stage_entered" else now + timedelta(hours=t["hours"])
            planned.append(_occurrence(rule, key, due, now, anchor_at=now, **base))
    for field_id, value in changed_fields.items():
        if value in (None, "", [], ()):
            continue
        for rule in rules.of("field_set"):
            t = rule.trigger
            if t["field_id"] == field_id and (not t["values"] or str(value) in t["values"]):
                planned.append(
                    _occurrence(rule, f"field:{deal_id}:{field_id}:{value}", now, now, anchor_at=now, **base)
                )
        for rule in rules.of("offset"):
            t = rule.trigger
            day = _as_date(value)
            if t["anchor"] == "date_field" and t.get("field_id") == field_id and day is not None:
                anchor = datetime.combine(day, time(), tzinfo=tz)
                at = _local_at(anchor, tz, days=t["days"], months=t["months"], at=t["at"])
                if at + rule.window > now:
                    planned.append(
                        _occurrence(
                            rule, f"date:{deal_id}:{field_id}:{day}", at, now, anchor_at=anchor, **base
                        )
                    )
    if phones and not any(e164(str(p)) for p in phones):
        for rule in rules.of("phone_flagged"):
            planned.append(_occurrence(rule, f"phone:deal:{deal_id}", now, now, anchor_at=now, **base))
    answered = 0
    for kind, field_id in settings.answer_fields.items():
        if field_id in changed_fields and changed_fields[field_id] not in (None, ""):
            value = normalise_answer(kind, str(changed_fields[field_id]))
            if value is not None:
                answered += record_answer(session, portal, deal_id, kind, value, "field", now)[1]
    _plan(session, portal.id, planned)
    return len(planned) + answered


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def normalise_answer(kind: str, value: str) -> str | None:
    """The canonical answer, or None when it is not one: yes/no, 0–10, «+»."""
    text = value.strip().lower()
    if kind == "confirmation":
        if text in ("yes", "да", "1", "true", "подтверждаю", "+"):
            return "yes"
        if text in ("no", "нет", "0", "false", "-"):
            return "no"
        return None
    if kind == "nps":
        return text if text.isdigit() and 0 <= int(text) <= 10 else None
    return "+" if text == "+" else None


def record_answer(
    session: Session, portal: Portal, deal_id: str, kind: str, value: str, source: str, now: datetime
) -> tuple[JourneyAnswer, bool]:
    """Store an answer once (the same answer again returns the first row, False) and plan its rules."""
    result = session.execute(
        _insert(session)(JourneyAnswer)
        .values(portal_id=portal.id, deal_id=deal_id, kind=kind, value=value, source=source, received_at=now)
        .on_conflict_do_nothing(index_elements=["portal_id", "deal_id", "kind", "value"])
        .returning(JourneyAnswer.id)
    ).scalar()
    answer = session.scalar(
        select(JourneyAnswer).where(
            JourneyAnswer.portal_id == portal.id,
            JourneyAnswer.deal_id == deal_id,
            JourneyAnswer.kind == kind,
            JourneyAnswer.value == value,
        )
    )
    assert answer is not None
    if result is None:
        return answer, False
    deal = session.scalar(
        select(JourneyDeal).where(JourneyDeal.portal_id == portal.id, JourneyDeal.deal_id == deal_id)
    )
    planned = [
        _occurrence(
            rule,
            f"answer:{answer.id}",
            now,
            now,
            anchor_at=now,
            deal_id=deal_id,
            patient_id=deal.patient_id if deal else None,
            context={"answer_kind": kind, "answer": value},
        )
        for rule in RuleSet.load(session, portal.id).of("answer")
        if rule.trigger["kind"] == kind
    ]
    _plan(session, portal.id, planned)
    return answer, True


def _chosen(rule: LiveRule, settings: JourneySettings) -> bool:
    # The confirm_d1 variant the portal did not choose plans nothing: a skipped occurrence per visit in
    # the firings list would only hide the real ones.
    mode = (rule.doc.get("conditions") or {}).get("confirm_mode")
    return mode is None or mode == settings.confirm_d1_mode


def on_confirm_mode_change(session: Session, portal: Portal, now: datetime) -> int:
    """confirm_d1_mode changed: the variant now chosen plans from the visits known (as when enabled); the
    other one's occurrences still scheduled go, never decided and so never real. Returns those planned."""
    settings = journey_settings(portal.settings)
    planned = 0
    for rule in RuleSet.load(session, portal.id).of("offset"):
        if (rule.doc.get("conditions") or {}).get("confirm_mode") is None:
            continue
        if _chosen(rule, settings):
            planned += backfill_rule(session, portal, rule.id, now)
        else:
            session.execute(
                delete(RuleFiring).where(RuleFiring.rule_id == rule.id, RuleFiring.state == "scheduled")
            )
    return planned


def backfill_rule(session: Session, portal: Portal, rule_id: int, now: datetime) -> int:
    """A rule just enabled plans from the visits already known: those whose occurrence is still ahead (or
    inside its window), and for `last_visit` each patient's latest completed visit. Nothing past is fired."""
    live = {r.id: r for r in RuleSet.load(session, portal.id).rules}.get(rule_id)
    if (
        live is None
        or live.trigger["type"] != "offset"
        or live.trigger["anchor"] not in ("visit", "last_visit")
    ):
        return 0
    t = live.trigger
    reach = timedelta(days=abs(t["days"]) + 31 * t["months"] + 1) + live.window
    query = select(MisAppointment).where(MisAppointment.portal_id == portal.id)
    if t["anchor"] == "visit":
        query = query.where(MisAppointment.starts_at >= now - reach)
    else:
        latest = (
            select(MisAppointment.patient_id, func.max(MisAppointment.starts_at).label("last"))
            .where(MisAppointment.portal_id == portal.id, MisAppointment.status == "completed")
            .group_by(MisAppointment.patient_id)
            .subquery()
        )
        query = query.join(
            latest,
            and_(MisAppointment.patient_id == latest.c.patient_id, MisAppointment.starts_at == latest.c.last),
        ).where(MisAppointment.status == "completed", MisAppointment.starts_at >= now - reach)
    return on_appointments(session, portal, list(session.scalars(query)), now, only=rule_id)


def replan_rule(session: Session, portal: Portal, rule_id: int, now: datetime) -> int:
    """After an edit: scheduled occurrences take the new timing; one whose new time is already past is
    skipped (an edit never fires the past). Decided occurrences are history and stay as they are."""
    live = {r.id: r for r in RuleSet.load(session, portal.id, enabled_only=False).rules}.get(rule_id)
    if live is None:
        return 0
    tz = ZoneInfo(portal.timezone)
    t = live.trigger
    rows = list(
        session.scalars(
            select(RuleFiring)
            .where(RuleFiring.rule_id == rule_id, RuleFiring.state == "scheduled")
            .with_for_update()
        )
    )
    past: list[int] = []
    for row in rows:
        row.rule_version_id = live.version_id
        if row.anchor_at is None or t["type"] not in ("offset", "stuck"):
            continue
        if t["type"] == "offset":
            planned = _local_at(row.anchor_at, tz, days=t["days"], months=t["months"], at=t["at"])
        else:
            planned = row.anchor_at + timedelta(hours=t["hours"])
        if planned < now and planned != row.planned_at:
            past.append(row.id)
            continue
        row.planned_at = row.due_at = planned
        row.expires_at = planned + live.window
    session.flush()
    _decide(session, past, "skipped", "the rule was edited after this occurrence's new time", now)
    return len(rows)


# --- firing -----------------------------------------------------------------------------------------------


@dataclass
class FireResult:
    fired: int = 0
    expired: int = 0
    skipped: int = 0
    postponed: int = 0
    jobs: int = 0
    firing_ids: list[int] = field(default_factory=list)

    def add(self, other: FireResult) -> None:
        self.fired += other.fired
        self.expired += other.expired
        self.skipped += other.skipped
        self.postponed += other.postponed
        self.jobs += other.jobs

    def as_dict(self) -> dict[str, int]:
        return {
            "fired": self.fired,
            "expired": self.expired,
            "skipped": self.skipped,
            "postponed": self.postponed,
            "jobs": self.jobs,
        }


def _has_message(actions: Sequence[Mapping[str, Any]]) -> bool:
    return any(a["type"] == "message" or _has_message(a.get("then") or ()) for a in actions)


class _Context:
    """What the conditions and placeholders of a chunk of firings read, loaded once per chunk."""

    def __init__(
        self, session: Session, portal: Portal, firings: Sequence[RuleFiring], now: datetime
    ) -> None:
        self.s = session
        self.portal = portal
        self.now = now
        self.tz = ZoneInfo(portal.timezone)
        self.settings: JourneySettings = journey_settings(portal.settings)
        appointment_ids = sorted({f.appointment_id for f in firings if f.appointment_id})
        self.appointments: dict[int, MisAppointment] = {}
        for start in range(0, len(appointment_ids), 500):
            for row in session.scalars(
                select(MisAppointment).where(MisAppointment.id.in_(appointment_ids[start : start + 500]))
            ):
                self.appointments[row.id] = row
        patient_ids = sorted(
            {f.patient_id for f in firings if f.patient_id}
            | {a.patient_id for a in self.appointments.values()}
        )
        self.patients: dict[int, MisPatient] = {}
        for start in range(0, len(patient_ids), 500):
            for patient in session.scalars(
                select(MisPatient).where(MisPatient.id.in_(patient_ids[start : start + 500]))
            ):
                self.patients[patient.id] = patient
        self.deals: dict[str, JourneyDeal | None] = {}
        deal_ids = sorted(
            {f.deal_id for f in firings if f.deal_id}
            | {a.deal_id for a in self.appointments.values() if a.deal_id}
        )
        for start in range(0, len(deal_ids), 500):
            chunk = deal_ids[start : start + 500]
            self.deals.update(dict.fromkeys(chunk))
            for deal in session.scalars(
                select(JourneyDeal).where(JourneyDeal.portal_id == portal.id, JourneyDeal.deal_id.in_(chunk))
            ):
                self.deals[deal.deal_id] = deal
        self._visits: dict[int, list[MisAppointment]] = {}

    def deal(self, deal_id: str) -> JourneyDeal | None:
        if deal_id not in self.deals:
            self.deals[deal_id] = self.s.scalar(
                select(JourneyDeal).where(
                    JourneyDeal.portal_id == self.portal.id, JourneyDeal.deal_id == deal_id
                )
            )
        return self.deals[deal_id]

    def visits(self, patient_id: int) -> list[MisAppointment]:
        if patient_id not in self._visits:
            self._visits[patient_id] = list(
                self.s.scalars(select(MisAppointment).where(MisAppointment.patient_id == patient_id))
            )
        return self._visits[patient_id]

    def in_complex_treatment(self, patient_id: int | None) -> bool:
        pipelines = self.settings.complex_treatment_pipelines
        if patient_id is None or not pipelines:
            return False
        closed = (self.settings.won_stage_id, self.settings.lost_stage_id)
        return (
            self.s.scalar(
                select(JourneyDeal.id)
                .where(
                    JourneyDeal.portal_id == self.portal.id,
                    JourneyDeal.patient_id == patient_id,
                    JourneyDeal.pipeline_id.in_(pipelines),
                    JourneyDeal.stage_id.not_in(closed),
                )
                .limit(1)
            )
            is not None
        )

    def answered(self, deal_id: str | None, kind: str, since: datetime) -> bool:
        if deal_id is None:
            return False
        return (
            self.s.scalar(
                select(JourneyAnswer.id)
                .where(
                    JourneyAnswer.portal_id == self.portal.id,
                    JourneyAnswer.deal_id == deal_id,
                    JourneyAnswer.kind == kind,
                    JourneyAnswer.received_at >= since,
                )
                .limit(1)
            )
            is not None
        )


def _failed_condition(rule: LiveRule, firing: RuleFiring, deal_id: str | None, ctx: _Context) -> str | None:
    """The first condition that does not hold, or None."""
    conditions = rule.doc.get("conditions") or {}
    appointment = ctx.appointments.get(firing.appointment_id or 0)
    patient_id = firing.patient_id or (appointment.patient_id if appointment else None)
    deal = ctx.deal(deal_id) if deal_id else None
    answer = (firing.context or {}).get("answer")
    if rule.trigger["type"] == "offset" and rule.trigger["anchor"] == "last_visit" and patient_id:
        later = [
            v for v in ctx.visits(patient_id) if v.status == "completed" and v.starts_at > firing.anchor_at
        ]
        if later:
            return "a later visit took place"
    if rule.trigger["type"] in ("stuck",) and (deal is None or deal.stage_entered_at != firing.anchor_at):
        return "the deal left the stage"
    for key, wanted in conditions.items():
        if key == "statuses" and wanted and (appointment is None or appointment.status not in wanted):
            return f"visit status is {appointment.status if appointment else 'unknown'}"
        if key == "kind" and (appointment is None or appointment.kind != wanted):
            return f"not a {wanted} visit"
        if key == "specialties" and wanted:
            specialty = (appointment.doc.get("specialty") if appointment else None) or ""
            if specialty not in wanted:
                return f"specialty {specialty or 'unknown'}"
        if key == "pipelines" and wanted:
            pipeline = deal.pipeline_id if deal else None
            if pipeline is None and appointment is not None and appointment.target:
                pipeline = appointment.target.get("pipeline_id")
            if pipeline not in wanted:
                return f"pipeline {pipeline}"
        if key == "loss_reasons" and wanted and (deal is None or deal.loss_reason not in wanted):
            return "loss reason not listed"
        if key == "not_loss_reasons" and deal is not None and deal.loss_reason in wanted:
            return f"loss reason {deal.loss_reason}"
        if key == "answer_values" and wanted and answer not in wanted:
            return f"answer {answer}"
        if key == "score_min" and (answer is None or int(answer) < wanted):
            return f"score {answer}"
        if key == "score_max" and (answer is None or int(answer) > wanted):
            return f"score {answer}"
        if key == "no_answer":
            since = ctx.now - timedelta(days=wanted["within_days"])
            if ctx.answered(deal_id, wanted["kind"], since):
                return f"the patient answered ({wanted['kind']})"
        if key == "fields_set":
            values = deal.fields if deal else {}
            missing = [f for f in wanted if values.get(f) in (None, "", [], False)]
            if missing:
                return f"field {missing[0]} is empty"
        if key == "complex_treatment" and ctx.in_complex_treatment(patient_id) != wanted:
            return "during complex treatment" if not wanted else "not in complex treatment"
        if key in ("future_booking", "no_booking_since_anchor", "curator_needed") and patient_id is None:
            return "no patient known"
        if key == "future_booking":
            booked = any(
                v.status in ACTIVE_VISIT and v.starts_at > ctx.now
                for v in ctx.visits(patient_id)  # type: ignore[arg-type]
            )
            if booked != wanted:
                return "a future visit is booked" if booked else "no future visit is booked"
        if key == "no_booking_since_anchor" and wanted:
            anchor = firing.anchor_at or ctx.now
            if any(
                v.starts_at > anchor and v.status not in ("cancelled", "void", "no_show")
                for v in ctx.visits(patient_id)  # type: ignore[arg-type]
            ):
                return "booked again since"
        if key == "confirm_mode" and ctx.settings.confirm_d1_mode != wanted:
            return f"confirmations go as {ctx.settings.confirm_d1_mode}"
        if key == "curator_needed" and wanted:
            curator = bool(deal and deal.fields.get(ctx.settings.curator_field_id))
            start = appointment.starts_at if appointment else ctx.now
            earlier = [
                v.starts_at for v in ctx.visits(patient_id) if v.status == "completed" and v.starts_at < start
            ]  # type: ignore[arg-type]
            long_ago = not earlier or start - max(earlier) > timedelta(days=365)
            if not (curator or long_ago or ctx.in_complex_treatment(patient_id)):
                return "no curator needed"
    return None


def _placeholders(firing: RuleFiring, deal_id: str | None, ctx: _Context) -> dict[str, str]:
    appointment = ctx.appointments.get(firing.appointment_id or 0)
    patient = ctx.patients.get(firing.patient_id or (appointment.patient_id if appointment else 0) or 0)
    deal = ctx.deal(deal_id) if deal_id else None
    values = {
        "ФИО": patient.name if patient else "",
        "Бренд": ctx.settings.brand,
        "тел. номер": ctx.settings.clinic_phone,
        "ссылки": "\n".join(ctx.settings.review_links),
        "цена": ctx.settings.hygiene_price,
        "план": str((deal.fields if deal else {}).get(ctx.settings.plan_link_field_id) or ""),
    }
    if appointment is not None:
        local = appointment.starts_at.astimezone(ctx.tz)
        values["дата"] = local.strftime("%d.%m.%Y")
        values["время"] = local.strftime("%H:%M")
        values["врач"] = str(appointment.doc.get("doctor_name") or "")
    return values


def _due(action: Mapping[str, Any], deal: JourneyDeal | None, ctx: _Context) -> datetime:
    fields = deal.fields if deal else {}
    if action.get("due_months_field"):
        months = str(fields.get(action["due_months_field"]) or "").split()[:1]
        n = int(months[0]) if months and months[0].isdigit() else 1
        return _local_at(ctx.now, ctx.tz, months=min(n, 12), at="10:00")
    if action.get("due_date_field"):
        day = _as_date(fields.get(action["due_date_field"]))
        if day is not None:
            return datetime.combine(day, time(10), tzinfo=ctx.tz).astimezone(UTC)
    if action.get("due_at"):
        due = _local_at(ctx.now, ctx.tz, days=action.get("due_days", 0), at=action["due_at"])
        return due if due > ctx.now else due + timedelta(days=1)
    return ctx.now + timedelta(days=action.get("due_days", 0), hours=1)


def not_seen_for_a_year(visits: Sequence[MisAppointment], deal_id: str | None, fallback: datetime) -> bool:
    """«не был более года»: the patient's last completed visit before the deal's date is over 365 days
    older than it. The deal's date is its first visit (else the firing's anchor); no earlier visit: False."""
    own = [v.starts_at for v in visits if deal_id and v.deal_id == deal_id]
    day = min(own) if own else fallback
    earlier = [v.starts_at for v in visits if v.status == "completed" and v.starts_at < day]
    return bool(earlier) and day - max(earlier) > timedelta(days=365)


def _computed(
    wanted: Mapping[str, str], deal_id: str | None, firing: RuleFiring, ctx: _Context
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field_id, what in wanted.items():
        if what == "not_seen_for_a_year":
            patient_id = firing.patient_id or (
                ctx.deal(deal_id).patient_id if deal_id and ctx.deal(deal_id) else None
            )
            visits = ctx.visits(patient_id) if patient_id else []
            out[field_id] = not_seen_for_a_year(visits, deal_id, firing.anchor_at or ctx.now)
    return out


def _operations(
    rule: LiveRule,
    actions: Sequence[Mapping[str, Any]],
    deal_id: str | None,
    firing: RuleFiring,
    ctx: _Context,
) -> list[tuple[str, dict[str, Any]]]:
    """(operation, payload) per action; `deal_id` None means "the deal created just before" (then)."""
    deal = ctx.deal(deal_id) if deal_id else None
    values = _placeholders(firing, deal_id, ctx)
    signature = f"правило «{rule.name}»"
    out: list[tuple[str, dict[str, Any]]] = []
    for action in actions:
        kind = action["type"]
        if kind == "task":
            text = f"{render(action['text'], values)} ({signature})"
            due = _due(action, deal, ctx).isoformat()
            user = action.get("user_id") or ctx.settings.roles.get(action.get("role") or "responsible")
            if user is None:
                out.append(("task_for_responsible", {"deal_id": deal_id, "text": text, "due_at": due}))
            else:
                out.append(
                    ("create_task", {"deal_id": deal_id, "user_id": user, "text": text, "due_at": due})
                )
        elif kind == "move":
            pipeline = action.get("pipeline_id") or (deal.pipeline_id if deal else None)
            payload = {"deal_id": deal_id, "pipeline_id": pipeline, "stage_id": action["stage_id"]}
            if action.get("loss_reason"):
                payload["loss_reason"] = action["loss_reason"]
            out.append(("move_deal", payload))
        elif kind == "note":
            out.append(("add_note", {"deal_id": deal_id, "text": render(action["text"], values)}))
        elif kind == "message":
            out.append(
                (
                    SEND_MESSAGE,
                    {
                        "deal_id": deal_id,
                        "text": render(action["text"], values),
                        "text_field_id": ctx.settings.message_field_id,
                        "bot_id": ctx.settings.bot_id,
                    },
                )
            )
        elif kind == "fields":
            out.append(("update_deal_fields", {"deal_id": deal_id, "fields": dict(action["fields"])}))
        elif kind == "tag":
            # Added to the deal's tags, never written over them (the tags field held only ours before).
            payload = {"deal_id": deal_id, "tag": action["tag"], "tag_field_id": ctx.settings.tag_field_id}
            out.append((ADD_TAG, payload))
        else:
            stage = action.get("stage_id")
            if action.get("stage_from_field"):
                stage = str((deal.fields if deal else {}).get(action["stage_from_field"]) or "") or None
            source = deal.fields if deal else {}
            out.append(
                (
                    CREATE_DEAL,
                    {
                        "firing_id": firing.id,
                        "source_deal_id": deal_id,
                        "patient_id": firing.patient_id,
                        "pipeline_id": action["pipeline_id"],
                        "stage_id": stage,
                        "name": render(action["name"], values),
                        "fields": {
                            **{f: source[f] for f in action.get("copy_fields") or () if f in source},
                            **_computed(action.get("computed_fields") or {}, deal_id, firing, ctx),
                        },
                        # Read again from the CRM when the job runs: a hook may not have carried them.
                        "copy_fields": list(action.get("copy_fields") or ()),
                        "then": [
                            {"operation": op, "payload": p}
                            for op, p in _operations(rule, action.get("then") or (), None, firing, ctx)
                        ],
                    },
                )
            )
    return out


def _summary(rule: LiveRule) -> str:
    return f"Путь пациента: правило «{rule.name}» (версия {rule.version}) сработало"


def _target_deal(rule: LiveRule, firing: RuleFiring, ctx: _Context) -> str | None:
    if rule.doc.get("target") == "created":
        created = (firing.context or {}).get("created_deal_id")
        if created:
            return str(created)
        earlier_id = (firing.context or {}).get("after_firing_id")
        earlier = ctx.s.get(RuleFiring, earlier_id) if earlier_id else None
        return (
            str(earlier.context["created_deal_id"])
            if earlier and earlier.context.get("created_deal_id")
            else None
        )
    if firing.deal_id:
        return firing.deal_id
    appointment = ctx.appointments.get(firing.appointment_id or 0)
    return appointment.deal_id if appointment else None


def _due_rows(
    session: Session, portal_id: int, now: datetime, limit: int, ids: Sequence[int] | None
) -> list[RuleFiring]:
    query = select(RuleFiring).where(
        RuleFiring.portal_id == portal_id, RuleFiring.state == "scheduled", RuleFiring.due_at <= now
    )
    if ids is not None:
        query = query.where(RuleFiring.id.in_(list(ids)))
    # By due time alone, which the index gives in order: adding the id made the database sort every due
    # row of a backlog for each chunk.
    query = query.order_by(RuleFiring.due_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # A second evaluator skips what the first holds; what the first fired it no longer sees as scheduled.
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


_DECISION = (
    "id",
    "state",
    "reason",
    "decided_at",
    "deal_id",
    "rule_version_id",
    "context",
    "due_at",
    "expires_at",
)


_KEPT = ("deal_id", "context", "due_at", "expires_at")


def _write_decisions(session: Session, firings: Sequence[RuleFiring], before: Mapping[int, tuple]) -> None:
    """Most rows of a chunk differ only in outcome: one UPDATE … WHERE id IN per outcome for those, an
    executemany for the rest (a deal found, a message held to the morning)."""
    same: dict[tuple[Any, ...], list[int]] = {}
    rest: list[dict[str, Any]] = []
    for f in firings:
        if tuple(getattr(f, name) for name in _KEPT) == before[f.id]:
            same.setdefault((f.state, f.reason, f.decided_at, f.rule_version_id), []).append(f.id)
        else:
            rest.append({name: getattr(f, name) for name in _DECISION})
    for (state, reason, decided_at, version_id), ids in same.items():
        session.execute(
            update(RuleFiring)
            .where(RuleFiring.id.in_(ids), RuleFiring.state == "scheduled")
            .values(state=state, reason=reason, decided_at=decided_at, rule_version_id=version_id)
        )
    if rest:
        session.execute(
            update(RuleFiring)
            .where(RuleFiring.state == "scheduled")
            .execution_options(synchronize_session=None),
            rest,
        )


def fire_due(
    session: Session, portal: Portal, now: datetime, *, limit: int = 1000, ids: Sequence[int] | None = None
) -> FireResult:
    """Decide up to `limit` due occurrences of the portal in the caller's transaction."""
    result = FireResult()
    firings = _due_rows(session, portal.id, now, limit, ids)
    if not firings:
        return result
    # Decisions are written below in two statements per chunk (one UPDATE executemany, one INSERT of the
    # jobs), not a unit-of-work round trip per row: the sweep must keep up with a backlog of a whole stop.
    for firing in firings:
        session.expunge(firing)
    before = {f.id: tuple(getattr(f, name) for name in _KEPT) for f in firings}
    rules = RuleSet.load(session, portal.id).by_id()
    ctx = _Context(session, portal, firings, now)
    jobs: list[dict[str, Any]] = []
    followers = RuleSet.load(session, portal.id).of("after_rule")
    planned: list[dict[str, Any]] = []
    with session.no_autoflush:
        for firing in firings:
            rule = rules.get(firing.rule_id)
            deal_id = _target_deal(rule, firing, ctx) if rule is not None else firing.deal_id
            firing.deal_id = deal_id or firing.deal_id
            if rule is None:
                firing.state, firing.reason = "skipped", "the rule is disabled"
            elif firing.expires_at is not None and now > firing.expires_at:
                firing.state, firing.reason = "expired", "past its window"
            else:
                failed = _failed_condition(rule, firing, deal_id, ctx)
                held = ctx.settings.quiet_until(now, ctx.tz) if _has_message(rule.doc["actions"]) else None
                if failed is not None:
                    firing.state, firing.reason = "skipped", failed
                elif deal_id is None or held is not None:
                    # Not dropped: the deal may not be created yet, or a patient is not written to at night.
                    firing.due_at = held or now + RETRY_LATER
                    firing.reason = "held for quiet hours" if held else "waiting for the deal"
                    if firing.expires_at is not None and held is not None:
                        firing.expires_at = max(firing.expires_at, held + rule.window)
                    result.postponed += 1
                    continue
                else:
                    firing.state, firing.reason = "fired", None
                    firing.deal_id = deal_id
                    firing.rule_version_id = rule.version_id
                    ops = _operations(rule, rule.doc["actions"], deal_id, firing, ctx)
                    ops.append(("add_note", {"deal_id": deal_id, "text": _summary(rule)}))
                    jobs.extend(
                        {
                            "portal_id": portal.id,
                            "operation": operation,
                            "payload": payload,
                            "idempotency_key": f"journey-{firing.id}-{index}",
                            "deal_id": deal_id,
                            "origin": f"journey:{firing.id}",
                        }
                        for index, (operation, payload) in enumerate(ops)
                    )
                    _apply_locally(ctx, rule, deal_id, firing, now)
                    for follower in followers:
                        if rule.key and follower.trigger["rule"] == rule.key:
                            t = follower.trigger
                            at = _local_at(now, ctx.tz, days=t["days"], at=t.get("at"))
                            planned.append(
                                _occurrence(
                                    follower,
                                    f"after:{firing.id}",
                                    at,
                                    now,
                                    anchor_at=now,
                                    deal_id=deal_id,
                                    patient_id=firing.patient_id,
                                    context={"after_firing_id": firing.id},
                                )
                            )
                    result.fired += 1
                    result.firing_ids.append(firing.id)
                    firing.decided_at = now
                    continue
            firing.decided_at = now
            if firing.state == "expired":
                result.expired += 1
            else:
                result.skipped += 1
    session.flush()
    _write_decisions(session, firings, before)
    _plan(session, portal.id, planned)
    if jobs:
        # Core's INSERT … RETURNING in multi-row batches; the ORM's form sorts the ids back into parameter
        # order by a sentinel, which the wake-ups do not need and which was three times slower.
        table = OutboxJob.__table__
        ids_ = list(session.execute(insert(table).returning(table.c.id), jobs).scalars())

        def wake() -> None:
            for start in range(0, len(ids_), WAKE_GROUP):
                wake_outbox_jobs(ids_[start : start + WAKE_GROUP])

        after_commit(session, wake)
    result.jobs = len(jobs)
    return result


def _apply_locally(ctx: _Context, rule: LiveRule, deal_id: str, firing: RuleFiring, now: datetime) -> None:
    """Our own moves and field writes come back only as echoes (ignored): what the next rule reads of the
    deal is updated here. Rules never react to our own writes, so this cannot loop."""
    for action in rule.doc["actions"]:
        if action["type"] not in ("move", "fields"):
            continue
        deal = ctx.deal(deal_id)
        if deal is None:
            deal = JourneyDeal(
                portal_id=ctx.portal.id, deal_id=deal_id, fields={}, patient_id=firing.patient_id
            )
            ctx.s.add(deal)
            ctx.deals[deal_id] = deal
        if action["type"] == "move":
            deal.pipeline_id = action.get("pipeline_id") or deal.pipeline_id
            deal.stage_id, deal.stage_entered_at = action["stage_id"], now
            deal.loss_reason = action.get("loss_reason")
        else:
            deal.fields = {**(deal.fields or {}), **action["fields"]}


# --- dry run --------------------------------------------------------------------------------------------


def preview(session: Session, portal: Portal, rule_id: int, now: datetime, days: int) -> list[dict[str, Any]]:
    """What the rule would do in the next `days`: its scheduled occurrences, and (for visit-anchored rules,
    enabled or not) the occurrences the visits already known would give. Nothing is written."""
    live = {r.id: r for r in RuleSet.load(session, portal.id, enabled_only=False).rules}.get(rule_id)
    if live is None:
        return []
    until = now + timedelta(days=days)
    tz = ZoneInfo(portal.timezone)
    candidates: list[RuleFiring] = list(
        session.scalars(
            select(RuleFiring).where(
                RuleFiring.rule_id == rule_id, RuleFiring.state == "scheduled", RuleFiring.due_at < until
            )
        )
    )
    seen = {c.occurrence for c in candidates}
    t = live.trigger
    if t["type"] == "offset" and t["anchor"] in ("visit", "last_visit"):
        # A visit's occurrence lies at most a year and the offset away from its start.
        reach = timedelta(days=abs(t["days"]) + 31 * t["months"] + 1)
        query = select(MisAppointment).where(
            MisAppointment.portal_id == portal.id,
            MisAppointment.starts_at >= now - reach,
            MisAppointment.starts_at < until + reach,
        )
        if t["anchor"] == "last_visit":
            query = query.where(MisAppointment.status == "completed")
        for row in session.scalars(query.order_by(MisAppointment.starts_at).limit(5000)):
            key = f"visit:{row.id}:{_ts(row.starts_at)}" if t["anchor"] == "visit" else f"last:{row.id}"
            at = _local_at(row.starts_at, tz, days=t["days"], months=t["months"], at=t["at"])
            if key in seen or not now <= at < until:
                continue
            candidates.append(
                RuleFiring(
                    rule_id=rule_id,
                    occurrence=key,
                    appointment_id=row.id,
                    patient_id=row.patient_id,
                    deal_id=row.deal_id,
                    anchor_at=row.starts_at,
                    planned_at=at,
                    due_at=at,
                    context={},
                )
            )
    ctx = _Context(session, portal, candidates, now)
    out = []
    with session.no_autoflush:
        for firing in sorted(candidates, key=lambda c: (c.due_at, c.occurrence)):
            deal_id = _target_deal(live, firing, ctx)
            ctx.now = max(now, firing.due_at)
            failed = _failed_condition(live, firing, deal_id, ctx)
            out.append(
                {
                    "occurrence": firing.occurrence,
                    "deal_id": deal_id,
                    "appointment_id": firing.appointment_id,
                    "due_at": firing.due_at.isoformat(),
                    "would": "skip" if failed else "fire",
                    "reason": failed,
                    "operations": [
                        op for op, _ in _operations(live, live.doc["actions"], deal_id, firing, ctx)
                    ]
                    if not failed
                    else [],
                }
            )
    return out
