"""Fraud rules engine: rules are data per organization, the worker evaluates them, people
work the alerts.

One module per job:
  * `rules`: rule kinds and their params (`validate_params`), DEFAULT_RULES, and rule
    create, update, delete and listing;
  * `evaluation`: the worker's side (`evaluate_batch`, one SQL statement per kind,
    `FraudConsumer`): raising and extending alerts in the batch's transaction;
  * `alerts`: listing alerts, their workflow, notes and audit trail, the live feed's scope;
  * `profile`: an organization's fraud profile (commerce health and open alerts).

The names below are what the rest of the application uses.
"""

from app.services.fraud.alerts import (
    PAGE_DEFAULT,
    AlertDetail,
    AuditEntry,
    add_note,
    alert_stream_scope,
    get_alert,
    list_alerts,
    update_alert,
)
from app.services.fraud.evaluation import FraudConsumer
from app.services.fraud.profile import organization_profile
from app.services.fraud.rules import Rule, create_rule, delete_rule, list_rules, update_rule

__all__ = [
    "PAGE_DEFAULT",
    "AlertDetail",
    "AuditEntry",
    "FraudConsumer",
    "Rule",
    "add_note",
    "alert_stream_scope",
    "create_rule",
    "delete_rule",
    "get_alert",
    "list_alerts",
    "list_rules",
    "organization_profile",
    "update_alert",
    "update_rule",
]
