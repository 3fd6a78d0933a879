"""The root Query, Mutation and Subscription: every domain's fields, merged in one place.

A domain declares its GraphQL fields as `Query`, `Mutation` and `Subscription` classes in
`resolvers/<domain>.py` (only those it has) and is listed once in `DOMAINS`. The order of
`DOMAINS` is the order of the fields in the published schema.
"""

from __future__ import annotations

from types import ModuleType

import strawberry

from resolvers import (
    accounts,
    campaigns,
    cohorts,
    costs,
    experiments,
    failed_payments,
    financial_reports,
    fraud,
    funnels,
    gov_alerts,
    gov_detection,
    host_webhooks,
    ingestion,
    insights,
    lifecycle,
    live,
    marketplace,
    notifications,
    organizations,
    persons,
    platform,
    pnl,
    privacy,
    profile_analytics,
    retention,
    revenue,
    support,
    system_health,
)

DOMAINS: tuple[ModuleType, ...] = (
    organizations,
    accounts,
    ingestion,
    profile_analytics,
    live,
    privacy,
    gov_detection,
    gov_alerts,
    fraud,
    revenue,
    costs,
    pnl,
    platform,
    financial_reports,
    insights,
    funnels,
    retention,
    lifecycle,
    persons,
    cohorts,
    experiments,
    marketplace,
    campaigns,
    notifications,
    system_health,
    failed_payments,
    host_webhooks,
    support,
)


def merged(name: str, description: str) -> type:
    """One root type with every domain's fields of that root, in `DOMAINS` order."""
    parts = [getattr(domain, name) for domain in DOMAINS if hasattr(domain, name)]
    fields = [f.name for part in parts for f in part.__strawberry_definition__.fields]
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    if repeated:
        raise TypeError(f"{name} fields declared by two domains: {', '.join(repeated)}")
    return strawberry.type(type(name, tuple(parts), {}), description=description)


Query = merged("Query", "Read the analytics you may see.")
Mutation = merged("Mutation", "Send events and manage an organization's data.")
Subscription = merged("Subscription", "Live updates over websocket (graphql-transport-ws or graphql-ws).")
