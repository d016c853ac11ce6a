"""Patient journey automation (seed 002): rules on visits, stages, fields and answers; once per (rule,
occurrence); a 5-minute sweep in the portal's timezone; actions through the outbox. No Flask, no HTTP
client, no concrete connector.

Flows call in with minimal hooks: the MIS sync after its batch (`plan_from_visits`), the inbox after a
person's deal change (`jobs.journey.journey_on_deal_event`), the answers endpoint (`record_answer`).
"""

from .engine import FireResult, fire_due, on_appointments, on_deal_change, record_answer, replan_rule
from .hooks import plan_from_visits
from .rules import Catalogue, RuleInvalid, create_rule, update_rule, validate_rule
from .templates import SEED002_TEMPLATES, install_templates

__all__ = [
    "SEED002_TEMPLATES",
    "Catalogue",
    "FireResult",
    "RuleInvalid",
    "create_rule",
    "fire_due",
    "install_templates",
    "on_appointments",
    "on_deal_change",
    "plan_from_visits",
    "record_answer",
    "replan_rule",
    "update_rule",
    "validate_rule",
]
