"""The in-patient stay (seed 000): buildings and beds, admission into a building's pipeline with the
ledger's stay account, the representative, prescriptions and medication rounds, examinations, relatives
informed, discharge. Domain code: no Flask, no HTTP client, no concrete connector."""

from .buildings import BuildingDraft, building_for, create_building, occupancy
from .catalogue import NEXT_STEPS, REASONS, reason_catalogue
from .errors import InpatientConflict, InpatientError, InpatientNotFound
from .examinations import ExaminationDraft, add_examination
from .prescriptions import PrescriptionDraft, add_prescription, stop_prescription
from .relatives import inform_about_ledger, inform_relatives
from .rounds import DueRound, due_rounds, escalate_overdue, record_round, round_id
from .settings import inpatient_settings
from .stays import (
    InpatientAdmission,
    Representative,
    admit_inpatient,
    arrival_day_tasks,
    current_stay,
    documents_done,
    expect_arrival,
    request_discharge,
)

__all__ = [
    "NEXT_STEPS",
    "REASONS",
    "BuildingDraft",
    "DueRound",
    "ExaminationDraft",
    "InpatientAdmission",
    "InpatientConflict",
    "InpatientError",
    "InpatientNotFound",
    "PrescriptionDraft",
    "Representative",
    "add_examination",
    "add_prescription",
    "admit_inpatient",
    "arrival_day_tasks",
    "building_for",
    "create_building",
    "current_stay",
    "documents_done",
    "due_rounds",
    "escalate_overdue",
    "expect_arrival",
    "inform_about_ledger",
    "inform_relatives",
    "inpatient_settings",
    "occupancy",
    "reason_catalogue",
    "record_round",
    "request_discharge",
    "round_id",
    "stop_prescription",
]
