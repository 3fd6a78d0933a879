"""The one event vocabulary shared by `trackEvents`, `publishDomainEvents`, the worker and
the live channels. A tracked `profile.viewed` and a published one are the same event."""

from __future__ import annotations

PROFILE_VIEWED = "profile.viewed"
PROFILE_INQUIRY = "profile.inquiry"
GIFT_PURCHASED = "gift.purchased"
BOOKING_COMPLETED = "booking.completed"
SUBSCRIPTION_CHARGED = "subscription.charged"
# Sent by a page-leave beacon with engagementMs: adds time on profile, not a view.
PROFILE_ENGAGED = "profile.engaged"
# Engagement with a profile beyond views: favorites (counted net of unfavorites), shares, and
# clicks on one of its links (properties.target names it: website, phone, email, booking...).
PROFILE_FAVORITED = "profile.favorited"
PROFILE_UNFAVORITED = "profile.unfavorited"
PROFILE_SHARED = "profile.shared"
PROFILE_CLICKED = "profile.clicked"
CLICK_TARGET_MAX_CHARS = 64
# Commerce and account events (no profileId needed); the fraud rules read them.
ORDER_PAID = "order.paid"
ORDER_REFUNDED = "order.refunded"
PAYMENT_FAILED = "payment.failed"
ACCOUNT_CREATED = "account.created"
TICKET_SCANNED = "ticket.scanned"
# A scan at the door that let nobody in (app/services/system_health/scanning.py): properties.errorType
# (invalid_code, already_used, network), deviceId, ticketId and/or code. No worker effect.
TICKET_SCAN_FAILED = "ticket.scan_failed"
SCAN_EVENT_TYPES = frozenset({TICKET_SCANNED, TICKET_SCAN_FAILED})
# Money events without a fraud rule: the ledger (app/services/revenue/ledger.py) records them.
AFFILIATE_COMMISSION = "affiliate.commission"
PAYOUT_SETTLED = "payout.settled"
# Invoices billed to an organization (app/services/financial_reports.py records them).
INVOICE_ISSUED = "invoice.issued"
INVOICE_PAID = "invoice.paid"
# An identify: links the event's anonymousId to its userId (app/services/insights/persons.py);
# tracked or published, it must carry both.
USER_IDENTIFIED = "user.identified"
# An SDK that assigns variants itself reports each exposure (properties.experimentKey and
# properties.variant); the worker's experiment consumer counts it once per person.
EXPERIMENT_EXPOSED = "experiment.exposed"

# A services marketplace (app/services/marketplace): executions roll up into latency
# sketches; searches, views and conversions feed its metrics; a conversion is a ledger sale.
SERVICE_EXECUTED = "service.executed"
MARKETPLACE_SEARCHED = "marketplace.searched"
MARKETPLACE_VIEWED = "marketplace.viewed"
MARKETPLACE_CONVERTED = "marketplace.converted"

PROFILE_ENGAGEMENT_TYPES = frozenset({PROFILE_FAVORITED, PROFILE_UNFAVORITED, PROFILE_SHARED, PROFILE_CLICKED})
PROFILE_DOMAIN_EVENT_TYPES = frozenset(
    {PROFILE_VIEWED, PROFILE_INQUIRY, GIFT_PURCHASED, BOOKING_COMPLETED, SUBSCRIPTION_CHARGED}
) | PROFILE_ENGAGEMENT_TYPES
MARKETPLACE_EVENT_TYPES = frozenset({SERVICE_EXECUTED, MARKETPLACE_SEARCHED, MARKETPLACE_VIEWED, MARKETPLACE_CONVERTED})
FRAUD_EVENT_TYPES = frozenset({ORDER_PAID, ORDER_REFUNDED, PAYMENT_FAILED, ACCOUNT_CREATED, TICKET_SCANNED})
LEDGER_EVENT_TYPES = frozenset(
    {BOOKING_COMPLETED, GIFT_PURCHASED, SUBSCRIPTION_CHARGED, AFFILIATE_COMMISSION, ORDER_PAID, ORDER_REFUNDED,
     PAYMENT_FAILED, PAYOUT_SETTLED, MARKETPLACE_CONVERTED}
)  # fmt: skip
INVOICE_EVENT_TYPES = frozenset({INVOICE_ISSUED, INVOICE_PAID})
DOMAIN_EVENT_TYPES = (
    PROFILE_DOMAIN_EVENT_TYPES | FRAUD_EVENT_TYPES | LEDGER_EVENT_TYPES | INVOICE_EVENT_TYPES | MARKETPLACE_EVENT_TYPES
    | {USER_IDENTIFIED, TICKET_SCAN_FAILED}
)
# Profile revenue: each of these adds to a profile's revenue rollups.
MONEY_EVENT_TYPES = frozenset({GIFT_PURCHASED, BOOKING_COMPLETED, SUBSCRIPTION_CHARGED})
# Every event that moves money: needs amountMinor + currency and a service or org admin token.
MONEY_MOVING_EVENT_TYPES = (
    MONEY_EVENT_TYPES | {ORDER_PAID, ORDER_REFUNDED, AFFILIATE_COMMISSION, PAYOUT_SETTLED, MARKETPLACE_CONVERTED}
    | INVOICE_EVENT_TYPES
)
PROFILE_EVENT_TYPES = PROFILE_DOMAIN_EVENT_TYPES | {PROFILE_ENGAGED}  # each needs a profileId

# Revenue source recorded in rollups for each money event.
REVENUE_SOURCE = {GIFT_PURCHASED: "gift", BOOKING_COMPLETED: "booking", SUBSCRIPTION_CHARGED: "subscription"}

# Short kind stored in profile_events and pushed to subscribers.
PROFILE_EVENT_KIND = {
    PROFILE_VIEWED: "view",
    PROFILE_INQUIRY: "inquiry",
    GIFT_PURCHASED: "gift",
    BOOKING_COMPLETED: "booking",
    SUBSCRIPTION_CHARGED: "subscription",
    PROFILE_ENGAGED: "engagement",
    PROFILE_FAVORITED: "favorite",
    PROFILE_UNFAVORITED: "unfavorite",
    PROFILE_SHARED: "share",
    PROFILE_CLICKED: "click",
}


# Ticketed events ("listings"): properties.listingId names one; listing.published carries its
# title, startsAt and endsAt (a later publish of the same listing replaces them); started and
# ended move it live and over (app/services/listings.py). An order.paid selling tickets names
# properties.listingId and properties.quantity. Published with a service token: no worker effect.
LISTING_PUBLISHED = "listing.published"
LISTING_STARTED = "listing.started"
LISTING_ENDED = "listing.ended"
LISTING_EVENT_TYPES = frozenset({LISTING_PUBLISHED, LISTING_STARTED, LISTING_ENDED})
DOMAIN_EVENT_TYPES = DOMAIN_EVENT_TYPES | LISTING_EVENT_TYPES
# The host platform's own webhooks that failed to reach their receiver (properties.endpoint,
# optional eventType, statusCode, error, attempt, maxAttempts): published with a service token,
# read by hostWebhookFailures (app/services/host_webhooks.py); no worker effect.
WEBHOOK_FAILED = "webhook.failed"
DOMAIN_EVENT_TYPES = DOMAIN_EVENT_TYPES | {WEBHOOK_FAILED}
# Campaign conversions: money events attributed to the UTM campaign of their session.
CAMPAIGN_CONVERSION_TYPES = MONEY_EVENT_TYPES | {ORDER_PAID}


# PostgreSQL NOTIFY channel: ingestion wakes the workers after committing events to the outbox.
OUTBOX_CHANNEL = "pulsegraph_outbox"

# Consumers whose effects other consumers of the same batch read (app/consumers.py).
GOV_ASSESSMENT = "gov_assessment"  # findings about the batch's views, before they are stored
PROFILE_ANALYTICS = "profile_analytics"  # the stored profile events and the rollup days written
GOV_ALERTS = "gov_alerts"  # the alerts written for flagged views


def needs_worker(event_type: str, has_profile: bool) -> bool:
    """Events the worker has effects for; others are stored already marked processed (unless a
    running experiment reads their type: ingestion's storage asks app.services.experiments).
    Persons (identity links, $set / $set_once, first and last seen) are written by ingestion
    itself, in the storage transaction: no event needs the worker for them."""
    return (
        (has_profile and event_type in PROFILE_EVENT_TYPES)
        or event_type in FRAUD_EVENT_TYPES
        or event_type in LEDGER_EVENT_TYPES
        or event_type in INVOICE_EVENT_TYPES
        or event_type == EXPERIMENT_EXPOSED
        or event_type in MARKETPLACE_EVENT_TYPES
    )


def view_channel(profile_id: str) -> str:
    """Broadcast channel of a profile's views."""
    return f"pg.views.{profile_id}"


def engagement_channel(profile_id: str) -> str:
    """Broadcast channel of a profile's running totals."""
    return f"pg.engagement.{profile_id}"


def gov_alert_channel(profile_id: str) -> str:
    """Broadcast channel of a profile's gov alerts."""
    return f"pg.gov.{profile_id}"


# Fraud alerts raised or extended by the worker: one channel per organization, one for the platform.
FRAUD_ALERTS_ALL_CHANNEL = "pg.fraud.all"


def fraud_alert_channel(organization_id: str) -> str:
    """Broadcast channel of one organization's fraud alerts."""
    return f"pg.fraud.{organization_id}"


# Money: gifts as the worker records them (per profile), and today's running revenue
# (per organization, and platform-wide for platform admins).
REVENUE_COUNTERS_ALL_CHANNEL = "pg.revenue.all"


def gift_channel(profile_id: str) -> str:
    """Broadcast channel of a profile's gift purchases."""
    return f"pg.gifts.{profile_id}"


def revenue_counter_channel(organization_id: str) -> str:
    """Broadcast channel of one organization's running revenue for today."""
    return f"pg.revenue.{organization_id}"


def experiment_channel(experiment_id: str) -> str:
    """Broadcast channel of one experiment's statistics: a message each time the worker moved them."""
    return f"pg.experiment.{experiment_id}"


# The services marketplace: today's counters of one organization (executions, views, revenue).
def marketplace_channel(organization_id: str) -> str:
    """Broadcast channel of one organization's marketplace counters for today."""
    return f"pg.marketplace.{organization_id}"


# System health: an API process wrote its timings (app/services/system_health); live API
# performance subscribers read the merged figures again.
API_TIMINGS_CHANNEL = "pg.system.api-timings"
