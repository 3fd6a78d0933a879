"""Revenue: the money ledger the worker writes from domain events, and what is read from it
(revenue by source, gifts, duo referrals, live counters).

One module per job:
  * `contract`: the ledger's vocabulary (row types and statuses, which event records which
    sale) and the money properties checked at ingestion (`check_properties`);
  * `ledger`: the worker's write path (`record_batch`: sales, refunds and their links,
    payouts; `LedgerConsumer`) and the live messages it sends after commit;
  * `money`: whose money a report covers (`money_scope`, `Scope`), the `MoneyReport` runner
    base, currencies and conversion into the reporting currency, per-currency totals;
  * `reports`: the report runners the resolvers call (revenue summary and time series,
    gifts, duo referrals);
  * `settings`: an organization's reporting currency, exchange rates and default duo split;
  * `counters`: today's running revenue, the first answer of the live counters.

The names below are what the rest of the application uses.
"""

from app.services.revenue.contract import check_properties
from app.services.revenue.counters import counters_scope, current_counters
from app.services.revenue.ledger import LedgerConsumer
from app.services.revenue.money import Scope, changes, convert
from app.services.revenue.reports import (
    DONOR_PURCHASES_MAX,
    duo_stats,
    gift_categories,
    gift_summary,
    revenue_summary,
    revenue_timeseries,
    top_gift_donors,
)
from app.services.revenue.settings import MoneySettings, money_settings, update_money_settings

__all__ = [
    "DONOR_PURCHASES_MAX",
    "LedgerConsumer",
    "MoneySettings",
    "Scope",
    "changes",
    "check_properties",
    "convert",
    "counters_scope",
    "current_counters",
    "duo_stats",
    "gift_categories",
    "gift_summary",
    "money_settings",
    "revenue_summary",
    "revenue_timeseries",
    "top_gift_donors",
    "update_money_settings",
]
