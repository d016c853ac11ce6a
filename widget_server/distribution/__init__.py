"""Lead distribution over operators on shift (seed 002): rules, shifts, strategies, the queue,
redistribution and hash-chained decisions. No Flask, no HTTP client, no concrete connector.

Every trigger (our API, amoCRM Digital Pipeline and webhooks, the Bitrix24 robot and ONCRMDEALADD) calls
`assign_deal(session, portal, deal_id, trigger=..., context=DealContext(...), rule_id=None, force=False)`
inside its transaction.
"""

from .queue import close_assignment, drain_queue
from .redistribution import mark_taken, record_manual, redistribute_due
from .rules import DEFAULT_TASK_TEXT, DealContext, RuleInvalid, create_rule, update_rule, validate_rule
from .service import AssignResult, assign_deal

__all__ = [
    "DEFAULT_TASK_TEXT",
    "AssignResult",
    "DealContext",
    "RuleInvalid",
    "assign_deal",
    "close_assignment",
    "create_rule",
    "drain_queue",
    "mark_taken",
    "record_manual",
    "redistribute_due",
    "update_rule",
    "validate_rule",
]
